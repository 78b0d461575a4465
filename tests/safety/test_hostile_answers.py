"""Hostile answers: property-based tests of every parser of an outside answer. Whatever the API, the
broker or the database answers, each check returns a result with a reason: never a crash (a `bug`).

HTTP layers (Traefik API, CloudFlare API, Kubernetes API, GCS JSON API, the app's prober JSON, nginx)
are driven through their real clients against a real local server that answers every path with the
generated document; Redis INFO, PostgreSQL rows, Celery replies and DNS answers are generated at the
function that returns them to the check (the parsers above it are what is under test)."""

from __future__ import annotations

import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studiodoctor import engine
from studiodoctor.model import Reason, Result
from tests.safety.stack import HTTP_LAYERS

# Field names the real answers use, so generated documents reach deep into the parsers.
KEYS = ["items", "metadata", "name", "namespace", "labels", "status", "spec", "containers", "containerStatuses",
        "state", "lastState", "terminated", "reason", "exitCode", "restartCount", "ready", "conditions", "type",
        "replicas", "availableReplicas", "readyReplicas", "updatedReplicas", "rules", "host", "http", "paths",
        "backend", "service", "usage", "memory", "cpu", "limits", "resources", "gitVersion", "continue",
        "rule", "entryPoints", "provider", "serverStatus", "loadBalancer", "servers", "url", "Version",
        "http", "routers", "services", "middlewares", "total", "errors", "warnings", "tls", "result",
        "success", "messages", "id", "value", "content", "proxied", "expression", "action", "enabled",
        "result_info", "page", "total_pages", "kind", "prefixes", "nextPageToken", "size", "cacheControl",
        "contentType", "bindings", "role", "members", "probers", "ok", "latency", "checks", "message",
        "code", "storageClass", "timeCreated", "updated", "location", "iamConfiguration", "startTime",
        "creationTimestamp", "lastTimestamp", "count", "involvedObject", "podIP", "phase", "message"]
SCALARS = (st.none() | st.booleans() | st.integers(-2**63, 2**64) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=24) | st.sampled_from(["True", "False", "Running", "OOMKilled", "1Gi", "500m",
                                                       "2026-01-01T00:00:00Z", "Host(`x`)", "enabled", "ok"]))
DOCS = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=6),
                    max_leaves=40)
BODIES = st.one_of(DOCS.map(lambda d: json.dumps(d).encode()), st.binary(max_size=300),
                   st.sampled_from([b"", b"<html><body>502 Bad Gateway</body></html>", b"null", b"[]", b"{}",
                                    b'{"items": null}', b'{"result": []}', b"\xef\xbb\xbf{}"]))
STATUSES = st.sampled_from([200, 200, 200, 201, 204, 301, 400, 401, 403, 404, 429, 500, 502, 503])

EXAMPLES = 25
HOSTILE = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                          HealthCheck.data_too_large])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    answer = (200, b"{}", "application/json")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _go(self):
        code, body, ctype = self.server.answer
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code not in (204, 304):
            self.wfile.write(body)

    do_GET = do_HEAD = do_OPTIONS = do_POST = _go


@pytest.fixture(scope="module")
def hostile():
    server = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def assert_reasoned(results: list[Result]):
    for r in results:
        assert isinstance(r, Result)
        assert r.reason != Reason.BUG.value, f"{r.id}: {r.summary}"
        assert r.summary.strip(), r.id


RUNS = {"examples": 0, "parsers": set()}


@pytest.mark.parametrize("layer", HTTP_LAYERS)
def test_any_http_answer_gives_a_reasoned_result(layer, hostile, stack_at):
    profile = stack_at(f"http://127.0.0.1:{hostile.server_address[1]}", timeout=3, public_urls=[])

    @HOSTILE
    @given(status=STATUSES, body=BODIES, ctype=st.sampled_from(["application/json", "text/html", ""]))
    def run(status, body, ctype):
        hostile.answer = (status, body, ctype)
        assert_reasoned(engine.check(profile, layers=[layer]).results)
        RUNS["examples"] += 1

    run()
    RUNS["parsers"].add(layer)


# --- answers of non-HTTP protocols, generated where the check receives them ----------------------------

INFO_KEYS = ["redis_version", "used_memory", "maxmemory", "maxmemory_policy", "evicted_keys", "rejected_connections",
             "connected_clients", "maxclients", "role", "master_link_status", "rdb_last_bgsave_status",
             "aof_enabled", "aof_last_write_status", "rdb_changes_since_last_save", "rdb_last_save_time",
             "loading", "mem_fragmentation_ratio", "used_memory_rss", "total_system_memory", "uptime_in_seconds",
             "connected_slaves", "master_host", "instantaneous_ops_per_sec", "blocked_clients"]
INFO = st.one_of(
    st.dictionaries(st.sampled_from(INFO_KEYS) | st.text(max_size=8), SCALARS, max_size=14),
    # a full INFO with hostile values in some fields: reaches the checks' own reading
    st.fixed_dictionaries({k: st.integers(0, 2**40) for k in ("used_memory", "evicted_keys", "rejected_connections")},
                          optional={k: SCALARS | st.integers(-5, 2**40).map(str) for k in INFO_KEYS
                                    if k not in ("used_memory", "evicted_keys", "rejected_connections")}),
    SCALARS)


def _lab_profile(make_profile, redis_server):
    return make_profile({"redis": {"url": redis_server.url(0)}, "celery": {"broker_url": redis_server.url(0)}},
                        timeout=3)


def test_any_redis_info_gives_a_reasoned_result(make_profile, redis_server, monkeypatch):
    from checks import redis as redis_layer

    import redis

    profile = _lab_profile(make_profile, redis_server)
    box = {}
    monkeypatch.setattr(redis.Redis, "info", lambda self, *a, **k: box["info"])  # the client's answer
    assert redis_layer.unreadable_info({}) == "INFO has no used_memory field"

    @HOSTILE
    @given(info=INFO)
    def run(info):
        box["info"] = info
        assert_reasoned(engine.check(profile, layers=["redis"]).results)
        RUNS["examples"] += 1

    run()
    RUNS["parsers"].add("redis INFO")


# --- Celery: the workers' replies to ping/inspect, and the messages in the broker's keys ----------------

WORKER = st.sampled_from(["celery@w1", "celery@w2", "", "x" * 300]) | st.text(max_size=12)
REPLY = SCALARS | DOCS | st.fixed_dictionaries({}, optional={"ok": SCALARS, "error": SCALARS})
# kombu's mailbox returns a list of the reply bodies (any JSON a worker sent); inspect merges them by name
PING_REPLIES = st.lists(st.dictionaries(WORKER, REPLY, max_size=3) | SCALARS | DOCS, max_size=4)
INSPECT = st.one_of(st.none(), st.dictionaries(WORKER, DOCS | st.lists(DOCS, max_size=3)
                                                         | st.fixed_dictionaries({}, optional={
                                                             "pool": st.dictionaries(st.sampled_from(
                                                                 ["max-concurrency", "processes", "implementation"]),
                                                                 SCALARS, max_size=3) | SCALARS}),
                                                         max_size=3))


def test_any_celery_reply_gives_a_reasoned_result(make_profile, redis_server, monkeypatch):
    """What workers answer a broadcast (ping, inspect active/stats) is theirs to shape: any reply."""
    from celery.app.control import Control, Inspect

    profile = _lab_profile(make_profile, redis_server)
    box = {}
    monkeypatch.setattr(Control, "ping", lambda self, *a, **k: box["ping"])
    monkeypatch.setattr(Inspect, "active", lambda self, *a, **k: box["active"])
    monkeypatch.setattr(Inspect, "stats", lambda self, *a, **k: box["stats"])

    @HOSTILE
    @given(ping=PING_REPLIES, active=INSPECT, stats=INSPECT)
    def run(ping, active, stats):
        box.update(ping=ping, active=active, stats=stats)
        assert_reasoned(engine.check(profile, layers=["celery"]).results)
        RUNS["examples"] += 1

    run()
    RUNS["parsers"].add("celery replies")


MESSAGES = st.one_of(DOCS.map(lambda d: json.dumps(d).encode()), st.binary(max_size=200),
                     st.fixed_dictionaries({"headers": st.dictionaries(st.sampled_from(["task", "id", "eta"]), SCALARS,
                                                                       max_size=3) | SCALARS}).map(
                         lambda d: json.dumps(d).encode()),
                     st.lists(DOCS, max_size=3).map(lambda d: json.dumps(d).encode()))
SCORES = st.one_of(st.floats(allow_nan=False), st.integers(-2**53, 2**53), st.sampled_from([0, 1e300, -1e300]))


def test_any_message_in_the_broker_gives_a_reasoned_result(make_profile, redis_server):
    """The queue's head message and the unacked deliveries (a hash of bodies, a sorted set of times), as the
    app or anything else left them in a real Redis."""
    profile = _lab_profile(make_profile, redis_server)
    admin = redis_server.client()

    @HOSTILE
    @given(queued=st.lists(MESSAGES, max_size=3), unacked=st.dictionaries(st.text(max_size=8), MESSAGES, max_size=3),
           scores=st.lists(SCORES, max_size=3))
    def run(queued, unacked, scores):
        admin.delete("celery", "unacked", "unacked_index")
        if queued:
            admin.rpush("celery", *queued)
        if unacked:
            admin.hset("unacked", mapping=unacked)
        tags = list(unacked) + [f"gone-{i}" for i in range(len(scores))]  # index entries with no body too
        index = {tag: score for tag, score in zip(tags, scores)}
        if index:
            admin.zadd("unacked_index", index)
        results = engine.check(profile, check_ids=["celery.queue_depth", "celery.unacked"]).results
        assert_reasoned(results)
        RUNS["examples"] += 1

    run()
    RUNS["parsers"].add("celery messages")


# --- DNS: whatever a resolver sends back on the wire -----------------------------------------------------

def _dns_answer(query_wire: bytes, kind: str, rcode: int, records: list, blob: bytes, flags: int) -> bytes:
    import dns.message
    import dns.rdataclass
    import dns.rdatatype
    import dns.rrset

    if kind == "bytes":
        return blob
    query = dns.message.from_wire(query_wire)
    answer = dns.message.make_response(query)
    answer.set_rcode(rcode)
    answer.flags ^= flags
    qname = query.question[0].name if query.question else dns.name.root
    for rtype, text, ttl in records:
        try:
            answer.answer.append(dns.rrset.from_text(qname, ttl, dns.rdataclass.IN, rtype, text))
        except Exception:  # noqa: BLE001 - text that is not valid rdata of that type: not sent
            continue
    wire = answer.to_wire()
    if kind == "truncated":
        return wire[: max(2, len(wire) // 2)]
    if kind == "other-id":
        return b"\x00\x00" + wire[2:]
    return wire


RECORDS = st.lists(st.tuples(st.sampled_from(["A", "AAAA", "CNAME", "NS", "TXT", "MX", "SOA"]),
                             st.sampled_from(["127.0.0.1", "::1", "0.0.0.0", "255.255.255.255", "104.16.0.1",
                                              "ns1.example.", "lia.ns.cloudflare.com.", "a.localtest.", ".",
                                              '"v=spf1"', "10 mx.example.", "ns. host. 1 2 3 4 5", "x" * 70]),
                             st.integers(0, 2**31 - 1)), max_size=5)


def test_any_dns_answer_gives_a_reasoned_result(make_profile):
    """A real UDP resolver on loopback answering every query with a generated message: garbage bytes, a
    truncated message, another id, any rcode, records of the wrong type or absurd data."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    box = {"answer": None}
    stop = threading.Event()

    def serve():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except OSError:
                continue
            try:
                sock.sendto(_dns_answer(data, *box["answer"]), peer)
            except Exception:  # noqa: BLE001 - a query we cannot parse: no answer (a timeout for the check)
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    profile = make_profile({"dns": {"zone": "localtest", "hostnames": ["studio.localtest", "a.localtest"],
                                    "resolvers": [f"127.0.0.1:{port}"], "query_timeout": 0.3}}, timeout=2)
    try:
        @HOSTILE
        @given(kind=st.sampled_from(["message", "message", "message", "bytes", "truncated", "other-id"]),
               rcode=st.sampled_from([0, 0, 0, 1, 2, 3, 5, 9]), records=RECORDS, blob=st.binary(max_size=64),
               flags=st.sampled_from([0, 0, 0x0200, 0x0400, 0x8000]))
        def run(kind, rcode, records, blob, flags):
            box["answer"] = (kind, rcode, records, blob, flags)
            assert_reasoned(engine.check(profile, layers=["dns"]).results)
            RUNS["examples"] += 1

        run()
    finally:
        stop.set()
        thread.join(2)
        sock.close()
    RUNS["parsers"].add("DNS answers")


# --- PostgreSQL: the rows of the monitoring queries, with hostile values ------------------------------

PG_BY_TYPE = {
    bool: st.booleans(),
    int: st.integers(-2**63, 2**63 - 1) | st.sampled_from([0, -1, 1]),
    float: st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -1.0]),
    str: st.text(max_size=60) | st.sampled_from(["", "idle in transaction", "active", "ExclusiveLock", "relation",
                                                 "16.2", "x" * 500]),
    list: st.lists(st.integers(-5, 2**31), max_size=3),
}


def test_any_postgres_rows_give_a_reasoned_result(make_profile, postgres_server, monkeypatch):
    """The query fixes the columns and their types; the values are the server's: negative or huge numbers,
    NaN and infinities, odd strings, more rows than usual. Generated at the function that returns rows to
    the checks (studiodoctor.backends.postgres.query), over the real rows of a real PostgreSQL (a NULL stays NULL)."""
    from studiodoctor.backends import postgres as pg

    real_query = pg.query
    box = {}

    def hostile_query(ctx, sql, params=None, **kw):
        out = real_query(ctx, sql, params, **kw)
        rows, elapsed = out if kw.get("timed") else (out, None)
        if "set_config" in sql or not rows:
            return out
        pool = box["pool"]  # drawn before the run: the checks run in threads, in any order

        def pick(v, k, i):
            values = pool.get(type(v).__name__)
            return values[zlib.crc32(f"{sql}|{k}|{i}".encode()) % len(values)] if values else v

        new = [{k: pick(v, k, i) for k, v in row.items()}
               for i, row in enumerate(rows + rows[:1] * (box["extra"] if len(rows) > 1 else 0))]
        return (new, elapsed) if kw.get("timed") else new

    monkeypatch.setattr(pg, "query", hostile_query)
    postgres_server.start_holder("idle-in-transaction")  # rows for the per-session queries to reach
    profile = make_profile({"postgres": {"dsn": postgres_server.dsn()}}, timeout=4)
    try:
        @HOSTILE
        @given(pool=st.fixed_dictionaries({t.__name__: st.lists(v, min_size=1, max_size=6)
                                           for t, v in PG_BY_TYPE.items()}), extra=st.integers(0, 3))
        def run(pool, extra):
            box.update(pool=pool, extra=extra)
            assert_reasoned(engine.check(profile, layers=["postgres"]).results)
            RUNS["examples"] += 1

        run()
    finally:
        postgres_server.stop_holders()
    RUNS["parsers"].add("postgres rows")


# --- preflight: what the APIs answer about our identity and grants ------------------------------------

@pytest.mark.parametrize("layer", ["kubernetes", "cloudflare", "gcs"])
def test_any_identity_or_grant_answer_gives_a_reasoned_preflight(layer, hostile, stack_at):
    from studiodoctor import preflight

    profile = stack_at(f"http://127.0.0.1:{hostile.server_address[1]}", timeout=3, public_urls=[])

    @HOSTILE
    @given(status=STATUSES, body=BODIES, ctype=st.sampled_from(["application/json", "text/html", ""]))
    def run(status, body, ctype):
        hostile.answer = (status, body, ctype)
        assert_reasoned(preflight.run(profile, [layer]).results)
        RUNS["examples"] += 1

    run()
    RUNS["parsers"].add("preflight answers")
