"""Read-only, measured (Redis): MONITOR on a real redis-server while the redis layer runs shows read
commands only."""

from __future__ import annotations

import threading

from studiodoctor import engine

# Commands that read or only set up the connection (no key or config is written). SUBSCRIBE receives what
# others publish on a channel (celery.busy_slots: the workers' heartbeats): no key, no message, nothing stays
# once the connection closes; PUBLISH, which delivers one, is a write.
READS = {"AUTH", "HELLO", "PING", "INFO", "CLIENT", "SELECT", "CONFIG|GET", "DBSIZE", "LLEN", "LINDEX", "HLEN",
         "HGET", "ZCARD", "ZRANGE", "SCAN", "TYPE", "EXISTS", "GET", "MEMORY", "ROLE", "LATENCY", "SLOWLOG",
         "COMMAND", "TIME", "ECHO", "KEYS", "QUIT", "RESET", "SUBSCRIBE"}


def monitored(redis_server, run) -> tuple[list[str], object]:
    """The commands Redis received while ``run()`` ran (MONITOR; CLIENT and CONFIG with their subcommand)."""
    import redis

    seen: list[str] = []
    ready = threading.Event()
    stop = threading.Event()

    def watch():
        client = redis.Redis(host="127.0.0.1", port=redis_server.port, password=redis_server.password or None,
                             decode_responses=True)
        with client.monitor() as mon:
            ready.set()
            for event in mon.listen():
                command = str(event.get("command", "")).split()
                if command:
                    name = command[0].upper()
                    if name in ("CLIENT", "CONFIG") and len(command) > 1:
                        name = f"{name}|{command[1].upper()}"
                    seen.append(name)
                if stop.is_set() and any(c == "ECHO" for c in seen[-1:]):
                    break

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    assert ready.wait(10)  # set once the server answered MONITOR with OK
    report = run()
    stop.set()
    marker = redis.Redis(host="127.0.0.1", port=redis_server.port, password=redis_server.password or None)
    marker.echo("end-of-run")
    thread.join(10)
    return seen, report


def test_the_redis_layer_sends_read_commands_only(redis_server, make_profile):
    seen, report = monitored(redis_server, lambda: engine.check(
        make_profile({"redis": {"url": redis_server.url(0)}}, timeout=5), layers=["redis"]))
    assert any(r.status.value == "ok" for r in report.results)
    assert "INFO" in seen and "PING" in seen  # the monitor saw the run
    writes = sorted({c.split("|")[0] for c in seen} - READS)
    assert not writes, writes


def test_the_celery_layers_read_only_checks_send_read_commands_only(redis_server, make_profile):
    """Every celery check declared read-only (what the in-cluster doctor's /report runs for a laptop),
    celery.consumers' CLIENT LIST among them, on a broker with tasks waiting."""
    from studiodoctor.lab.servers.celery_worker import CeleryWorker
    from studiodoctor.model import READ_ONLY
    from studiodoctor.registry import default_registry

    CeleryWorker(redis_server.dir.parent / "worker", broker_url=redis_server.url(0)).backlog(3)
    ids = [c.id for c in default_registry.load_plugins().checks.values() if c.layer == "celery" and c.safety == READ_ONLY]
    assert "celery.consumers" in ids and "celery.workers" not in ids
    admin = redis_server.client()
    before = command_calls(admin)
    seen, report = monitored(redis_server, lambda: engine.check(
        make_profile({"redis": {"url": redis_server.url(0)}}, timeout=5), check_ids=ids))
    ran = {name for name, calls in command_calls(admin).items() if calls > before.get(name, 0)}
    results = {r.id: r for r in report.results}
    assert results["celery.consumers"].status.value == "fail", results["celery.consumers"].summary
    assert "LLEN" in seen, seen   # the monitor saw the run
    writes = sorted({c.split("|")[0] for c in seen} - READS)
    assert not writes, writes
    # MONITOR never shows administrative commands (CLIENT among them): Redis' own counters do (CLIENT
    # SETINFO: the test's own monitor connection; ours sends none)
    assert "CLIENT|LIST" in ran and "SUBSCRIBE" in ran, sorted(ran)   # celery.busy_slots listened too
    assert "PUBLISH" not in ran, sorted(ran)
    admin_ran = {c for c in ran if c.startswith(("CLIENT|", "CONFIG|"))} - {"CLIENT|LIST", "CLIENT|SETINFO"}
    assert not admin_ran, sorted(ran)
    assert not sorted({c.split("|")[0] for c in ran} - READS - {"MONITOR"}), sorted(ran)


def command_calls(client) -> dict[str, int]:
    """Redis' count of calls per command (INFO commandstats: every command, administrative ones too)."""
    return {name.removeprefix("cmdstat_").upper(): int(stats["calls"])
            for name, stats in client.info("commandstats").items()}
