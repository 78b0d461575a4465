"""The workers as the broker sees them (one read: CLIENT LIST): celery.consumers.

A Celery worker on kombu's Redis transport holds, for as long as its process lives, one connection that
polls its queues with ``BRPOP`` (kombu's ``brpop_timeout`` is 1 s: blocked, or between two rounds, or
paused while its prefetch is full, its last command stays ``brpop``) and one or more that listen on the
control channel ``/<db>.celery.pidbox`` (and, with gossip, on ``celeryev``) with ``PSUBSCRIBE``: that is
where ``celery inspect ping`` reaches it. A process that stops, is killed or is OOM-killed closes them: they
leave ``CLIENT LIST`` at once. Nothing here is published or popped (the broadcast ping is
``celery.workers``, which the in-cluster doctor never runs for a caller).

Measured against a real worker (tests/checks/test_celery_consumers.py): idle, busy and after a stop.
"""

from __future__ import annotations

from studiodoctor.model import READ_ONLY, Command, Reason, error, fail, ok, warn
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import (CONSUMERS, REDIS_REACHABLE, _address, _broker_url, _deployment, _kube, _no_broker,
                     _not_redis, _queue_depths, _redis_cli, _redis_client, _redis_failure, _setting)

_CONSUME = "brpop"                       # kombu's Redis transport polls its queues with BRPOP only
_MAX_LISTED = 10                         # connections named in the evidence


def parse_client_list(raw) -> list[dict]:
    """CLIENT LIST's answer (one line per connection of ``key=value`` fields) as dicts; a pure function."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw or "")
    clients = []
    for line in text.splitlines():
        fields = dict(part.split("=", 1) for part in line.split(" ") if "=" in part)
        if fields.get("addr"):
            clients.append(fields)
    return clients


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _host(addr: str) -> str:
    return addr.rsplit(":", 1)[0].strip("[]") if ":" in addr else addr


def worker_connections(clients: list[dict], db: int) -> dict:
    """The broker's connections sorted out: per client host, the consumers (last command BRPOP on ``db``)
    and the control listeners (a pattern subscription: kombu subscribes to its fanout channels with PSUBSCRIBE
    only, so a plain SUBSCRIBE, such as celery.busy_slots' on the heartbeat channel, is a reader, not a worker).
    A worker is a consumer whose host also listens: a consumer alone is a broadcast's reply queue (a doctor's
    or Flower's ping), not a worker."""
    hosts: dict[str, dict] = {}
    for c in clients:
        host = hosts.setdefault(_host(c.get("addr", "")), {"consumers": [], "listeners": 0})
        if c.get("cmd", "").lower() == _CONSUME and _int(c.get("db")) == db:
            host["consumers"].append({"addr": c.get("addr"), "name": c.get("name") or None,
                                      "blocked": "b" in c.get("flags", ""), "age_s": _int(c.get("age")),
                                      "idle_s": _int(c.get("idle"))})
        elif _int(c.get("psub")):
            host["listeners"] += 1
    workers, replies = [], []
    for host in sorted(hosts):
        consumers = sorted(hosts[host]["consumers"], key=lambda c: -c["age_s"])  # the oldest are the workers'
        n = min(len(consumers), hosts[host]["listeners"])
        workers += consumers[:n]
        replies += consumers[n:]
    return {"workers": workers, "unpaired": replies, "clients": len(clients)}


def connected_workers(ctx, url: str) -> dict:
    """``worker_connections`` of the broker's CLIENT LIST, read once per run (celery.consumers and
    celery.busy_slots share it); ``{"error": exc}`` when the broker refused it."""

    def read():
        client = _redis_client(ctx, url)
        db = _int(client.connection_pool.connection_kwargs.get("db", 0))
        try:
            return worker_connections(parse_client_list(client.execute_command("CLIENT", "LIST")), db)
        except Exception as exc:  # the caller says what a refusal means for it
            return {"error": exc}

    return ctx.shared.get(f"celery.clients:{url}", read)


def _named(conn: dict) -> str:
    state = "waiting on its queues" if conn["blocked"] else f"last polled {conn['idle_s']} s ago"
    return f"{conn['name'] or conn['addr']} ({state}, connected {conn['age_s']} s)"


@check(CONSUMERS, title="Celery workers connected to the broker", depends_on=(REDIS_REACHABLE,),
       permissions=("CLIENT LIST (Redis ACL +client|list)", "LLEN on the queues"))
def check_consumers(ctx):
    """Celery workers are connected to the broker: read-only, from the broker's own list of connections.

    A worker on Redis holds one connection polling its queues (last command `BRPOP`) and one listening on
    the control channel (`PSUBSCRIBE /<db>.celery.pidbox`, where `celery inspect ping` reaches it); a
    stopped, killed or OOM-killed worker drops both. `CLIENT LIST` (one read, no message published) counts
    the hosts holding both, the consumer on the broker's database: none is a `fail` (nothing takes the
    tasks: publishes never start, edits are never applied), fewer than `celery.expected_workers` (if set)
    a `warn`. A consumer without a listener on its host is a broadcast's reply queue (a ping from another
    doctor or Flower) and is not counted; nor is a worker started with remote control off (no control
    channel: `celery inspect ping` cannot reach it either). A Redis that refuses `CLIENT LIST` (ACL
    without `+client|list`, or a managed Redis that renames it) gives an `error` saying so, never a guess.
    Unlike the ping, this works from the in-cluster doctor's read-only `/report`. Fix: look at the
    workers' pods and logs, then restart the deployment."""
    url = _broker_url(ctx)
    if not url:
        return _no_broker()
    if (res := _not_redis(url)) is not None:
        return res
    seen = connected_workers(ctx, url)
    if "error" in seen:
        return client_list_refused(ctx, url, seen["error"])
    workers = seen["workers"]
    expected = max(0, _int(_setting(ctx, "expected_workers")))
    try:
        queued = sum(q["total"] for q in _queue_depths(ctx, url).values())
    except Exception:   # celery.queue_depth reports the broker's errors; here the figure is context only
        queued = None
    evidence = {"broker": _address(url), "workers": len(workers), "expected": expected or None,
                "consumers": workers[:_MAX_LISTED], "unpaired_consumers": seen["unpaired"][:_MAX_LISTED],
                "connections": seen["clients"], "queued": queued}
    kube = _kube(ctx)
    commands = [Command(_redis_cli(url, "CLIENT LIST"), READ_ONLY, "each worker: a brpop and a psubscribe connection"),
                Command(f"{kube} get pods -l tier=workers -o wide", READ_ONLY, "the pod IPs are the workers' addresses"),
                Command(f"{kube} logs -l tier=workers --tail=200", READ_ONLY)]
    waiting = f"; {queued} task(s) queued" if queued else ""
    if not workers:
        return fail(f"no Celery worker is connected to the broker {_address(url)}: no connection polls a queue "
                    f"(BRPOP) with the control channel subscribed{waiting}", evidence=evidence, commands=commands,
                    hint="the workers are down or connected elsewhere: check the workers deployment's pods and "
                         f"logs, then restart it ({kube} rollout restart deploy/{_deployment(ctx, 'workers')})")
    names = ", ".join(_named(w) for w in workers[:3]) + (", ..." if len(workers) > 3 else "")
    if len(workers) < expected:
        return warn(f"{len(workers)} of {expected} expected Celery workers connected to the broker: {names}",
                    evidence=evidence, commands=commands,
                    hint="some worker pods are missing or their process died; compare with the deployment's replicas")
    return ok(f"{len(workers)} Celery worker(s) connected to the broker: {names}{waiting}", evidence=evidence)


def client_list_refused(ctx, url: str, exc: Exception):
    """CLIENT LIST refused: by the ACL (error naming the grant), renamed or disabled (error saying so)."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if "unknown command" in text.lower() or "unknown subcommand" in text.lower():
        return error(f"this Redis does not allow CLIENT LIST ({text}): the workers' connections cannot be "
                     f"counted from here", reason=Reason.FORBIDDEN, evidence={"broker": _address(url)},
                     hint="celery.workers (the broadcast ping) still sees the workers where it may run")
    return _redis_failure(ctx, url, exc, "the broker's connections (CLIENT LIST)")
