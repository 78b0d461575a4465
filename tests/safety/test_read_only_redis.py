"""Read-only, measured (Redis): MONITOR on a real redis-server while the redis layer runs shows read
commands only."""

from __future__ import annotations

import threading

from studiodoctor import engine

# Commands that read or only set up the connection (no key or config is written).
READS = {"AUTH", "HELLO", "PING", "INFO", "CLIENT", "SELECT", "CONFIG|GET", "DBSIZE", "LLEN", "LINDEX", "HLEN",
         "HGET", "ZCARD", "ZRANGE", "SCAN", "TYPE", "EXISTS", "GET", "MEMORY", "ROLE", "LATENCY", "SLOWLOG",
         "COMMAND", "TIME", "ECHO", "KEYS", "QUIT", "RESET"}


def test_the_redis_layer_sends_read_commands_only(redis_server, make_profile):
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
                        name = f"{name}|{command[1].upper()}" if name == "CONFIG" else name
                    seen.append(name)
                if stop.is_set() and any(c == "ECHO" for c in seen[-1:]):
                    break

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    assert ready.wait(10)  # set once the server answered MONITOR with OK
    report = engine.check(make_profile({"redis": {"url": redis_server.url(0)}}, timeout=5), layers=["redis"])
    stop.set()
    marker = redis.Redis(host="127.0.0.1", port=redis_server.port, password=redis_server.password or None)
    marker.echo("end-of-run")
    thread.join(10)
    assert any(r.status.value == "ok" for r in report.results)
    assert "INFO" in seen and "PING" in seen  # the monitor saw the run
    writes = sorted(set(seen) - READS)
    assert not writes, writes
