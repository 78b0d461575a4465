"""Bounded memory of `studiodoctor serve`: RSS growth over many cycles of the exporter.

One cycle = one smoke run of the background loop, one scrape of /metrics and one /probe that misses the
cache (so it runs too), both over real HTTP to the exporter's own server on loopback. Against a trivial
registry by default (the exporter's own bookkeeping is what is measured), or the real redis layer with
``--redis-url`` (e.g. the lab's: `studiodoctor config show --profile lab`).

Run: .venv/bin/python benchmarks/serve_memory.py [--cycles 10000] [--redis-url redis://127.0.0.1:PORT/0]
"""

from __future__ import annotations

import argparse
import gc
import threading
import time


def rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def trivial_registry():
    from studiodoctor.model import ok
    from studiodoctor.registry import Registry

    reg = Registry()
    reg.check("demo.up", title="up", smoke=True, metrics=("latency_ms;warn_ms;fail_ms;0",))(
        lambda ctx: ok("up", evidence={"latency_ms": 1.5, "warn_ms": 100, "fail_ms": 1000}))
    reg.check("demo.depth", title="depth", smoke=True, depends_on=("demo.up",), metrics=("total;50;;0",))(
        lambda ctx: ok("0 waiting", evidence={"total": 0, "queues": {"celery": 0}}))
    reg.check("demo.other", title="other")(lambda ctx: ok("fine", evidence={"x": "y" * 200}))
    return reg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=500, help="cycles before the baseline RSS is read")
    parser.add_argument("--redis-url", default="", help="probe this Redis (the redis layer) instead of a trivial registry")
    args = parser.parse_args()

    import httpx

    from studiodoctor.config import profile_from_data
    from studiodoctor.registry import default_registry
    from studiodoctor.commands.serve import Exporter, make_server

    if args.redis_url:
        profile = profile_from_data("bench", {"redis": {"url": args.redis_url}, "timeout": 5}, env={})
        registry, layers, probe_layer = default_registry.load_plugins(), ["redis"], "redis"
    else:
        profile = profile_from_data("bench", {"timeout": 5}, env={})
        registry, layers, probe_layer = trivial_registry(), [], "demo"
    exporter = Exporter(profile, registry=registry, layers=layers, interval=3600, budget=10, probe_budget=5,
                        probe_cache=0)
    server = make_server(exporter, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    marks = sorted({args.warmup, *range(0, args.cycles + 1, max(1, args.cycles // 10)), args.cycles} - {0})
    baseline = None
    t0 = time.monotonic()
    with httpx.Client(timeout=30) as client:
        for i in range(1, args.cycles + 1):
            exporter.smoke_once()
            assert client.get(f"{base}/metrics").status_code == 200
            assert client.get(f"{base}/probe", params={"layer": probe_layer}).status_code == 200
            if i in marks:
                gc.collect()
                rss = rss_kib()
                if i == args.warmup:
                    baseline = rss
                print(f"cycle {i:>6}: RSS {rss / 1024:7.1f} MiB, threads {threading.active_count()}, "
                      f"{(time.monotonic() - t0) / i * 1000:.1f} ms/cycle", flush=True)
    server.shutdown()
    final = rss_kib()
    if baseline is not None:
        growth = final - baseline
        per = growth / max(1, args.cycles - args.warmup)
        print(f"RSS after {args.warmup} warm-up cycles {baseline / 1024:.1f} MiB, after {args.cycles} "
              f"{final / 1024:.1f} MiB: growth {growth / 1024:+.1f} MiB ({per * 1024:+.1f} bytes/cycle)")


if __name__ == "__main__":
    main()
