"""Hostile answers: property-based tests of every parser of an outside answer. Whatever the API, the
broker or the database answers, each check returns a result with a reason: never a crash (a `bug`).

HTTP layers (Traefik API, CloudFlare API, Kubernetes API, GCS JSON API, the app's prober JSON, nginx)
are driven through their real clients against a real local server that answers every path with the
generated document; Redis INFO, PostgreSQL rows, Celery replies and DNS answers are generated at the
function that returns them to the check (the parsers above it are what is under test)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studiodoctor import engine
from studiodoctor.model import Reason, Result

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


def _http_sections(url: str) -> dict:
    return {
        "traefik": {"api_url": url},
        "cloudflare": {"api_url": url + "/client/v4", "api_token": "fuzz-token-123456", "zone": "example.org"},
        "kubernetes": {"api_url": url, "namespace": "studio"},
        "gcs": {"bucket": "content", "endpoint": url, "public_url": url},
        "app": {"url": url, "api_token": "fuzz-token-123456"},
        "nginx": {"url": url},
    }


HTTP_LAYERS = ["traefik", "cloudflare", "kubernetes", "gcs", "app", "nginx"]
RUNS = {"examples": 0, "parsers": set()}


@pytest.mark.parametrize("layer", HTTP_LAYERS)
def test_any_http_answer_gives_a_reasoned_result(layer, hostile, make_profile):
    url = f"http://127.0.0.1:{hostile.server_address[1]}"
    profile = make_profile(_http_sections(url), timeout=3, public_urls=[])

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
