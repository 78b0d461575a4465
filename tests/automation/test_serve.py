"""`studiodoctor serve`: /metrics from the smoke loop, /probe with one lock and a cache, /healthz."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from studiodoctor.cli import main
from studiodoctor.model import ok
from studiodoctor.registry import Registry, default_registry
from studiodoctor.commands.serve import Exporter, make_server

from test_formats import samples


@pytest.fixture
def serving():
    """serving(exporter) -> base URL of a real HTTP server on a free loopback port."""
    servers = []

    def start(exporter: Exporter) -> str:
        server = make_server(exporter, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append((server, exporter))
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server, exporter in servers:
        exporter.stop.set()
        server.shutdown()
        server.server_close()


def test_metrics_probe_and_healthz_against_a_real_redis(make_profile, redis_server, serving):
    prof = make_profile({"redis": {"url": redis_server.url()}}, name="t", timeout=5)
    exporter = Exporter(prof, registry=default_registry.load_plugins(), layers=["redis"], interval=300,
                        budget=10, probe_budget=8, probe_cache=60)
    base = serving(exporter)
    assert httpx.get(f"{base}/healthz").status_code == 503  # the loop is not running yet
    exporter.start()
    assert exporter.ran.wait(30)
    health = httpx.get(f"{base}/healthz")
    assert health.status_code == 200 and health.text.startswith("ok")

    metrics = httpx.get(f"{base}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    fams = samples(metrics.text)
    status = {s.labels["check"]: s.value for s in fams["studiodoctor_check_status"]}
    assert status == {"redis.reachable": 0, "redis.latency": 0, "redis.memory": 0}
    assert fams["process_resident_memory_bytes"][0].value > 0

    probe = samples(httpx.get(f"{base}/probe", params={"layer": "redis"}, timeout=20).text)
    probed = {s.labels["check"] for s in probe["studiodoctor_check_status"]}
    assert "redis.evictions" in probed and "redis.persistence" in probed  # the whole layer, not just smoke
    again = httpx.get(f"{base}/probe", params={"layer": "redis"}, timeout=20)
    assert samples(again.text)["studiodoctor_run_timestamp_seconds"] == probe["studiodoctor_run_timestamp_seconds"]
    fams = samples(httpx.get(f"{base}/metrics").text)
    runs = {s.labels["kind"]: s.value for s in fams["studiodoctor_serve_runs"] if s.name.endswith("_total")}
    assert runs["probe"] == 1
    assert [s.value for s in fams["studiodoctor_serve_probe_cache_hits"] if s.name.endswith("_total")] == [1]


def test_runs_never_overlap_and_a_scrape_storm_costs_one_run(make_profile, serving):
    active, peak, calls = [0], [0], []
    lock = threading.Lock()

    def busy(ctx):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            calls.append(ctx.check.id)
        time.sleep(0.2)
        with lock:
            active[0] -= 1
        return ok("done")

    reg = Registry()
    reg.check("alpha.one", title="a", smoke=True)(busy)
    reg.check("beta.one", title="b")(busy)
    exporter = Exporter(make_profile(name="t"), registry=reg, interval=300, budget=5, probe_budget=5,
                        probe_cache=60)
    base = serving(exporter)
    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(httpx.get, f"{base}/probe", params={"layer": layer}, timeout=30)
                   for layer in ["alpha", "beta"] * 5]
        futures.append(pool.submit(exporter.smoke_once))
        answers = [f.result() for f in futures[:-1]]
    assert all(a.status_code == 200 for a in answers)
    assert peak[0] == 1                                      # never two runs at once
    assert sorted(calls) == ["alpha.one", "alpha.one", "beta.one"]  # one probe per layer, one smoke run


@pytest.mark.parametrize("query,code,text", [("layer=nope", 400, "unknown layer 'nope'"),
                                             ("", 400, "say which layer"),
                                             ("layer=alpha&profile=nope", 400, "nope")])
def test_bad_probe_requests_are_400_with_one_line(make_profile, serving, query, code, text):
    reg = Registry()
    reg.check("alpha.one", title="a")(lambda ctx: ok("fine"))

    def load(name):
        from studiodoctor.config import load_profile

        return load_profile(name, None, env={})

    base = serving(Exporter(make_profile(name="t"), load_profile=load, registry=reg))
    answer = httpx.get(f"{base}/probe?{query}")
    assert answer.status_code == code and text in answer.text and len(answer.text.strip().splitlines()) == 1


def test_cli_serve_refuses_a_bad_listen_address(capsys):
    assert main(["serve", "--listen", "nowhere"]) == 3
    assert "expected HOST:PORT" in capsys.readouterr().err


def test_root_is_the_picture_of_the_last_run_and_refreshes_itself(make_profile, redis_server, serving):
    prof = make_profile({"redis": {"url": redis_server.url()}}, name="t", timeout=5)
    exporter = Exporter(prof, registry=default_registry.load_plugins(), layers=["redis"], interval=30, budget=10)
    base = serving(exporter)
    waiting = httpx.get(f"{base}/")
    assert waiting.headers["content-type"] == "text/html; charset=utf-8"
    assert "has not finished yet" in waiting.text and '<meta http-equiv="refresh" content="3">' in waiting.text
    exporter.start()
    assert exporter.ran.wait(30)
    page = httpx.get(f"{base}/")
    assert page.status_code == 200 and '<meta http-equiv="refresh" content="30">' in page.text
    assert 'data-box="redis" data-status="ok"' in page.text and "studiodoctor smoke" in page.text
    redis_server.stop()
    exporter.ran.clear()
    exporter.stop.set()          # one more run, now, without waiting for the interval
    exporter.smoke_once()
    assert 'data-box="redis" data-status="fail"' in httpx.get(f"{base}/").text
