"""--save-baseline and diagnose --since-good: what changed since the last good run, in evidence that matters."""

from __future__ import annotations

import json

import pytest

from studiodoctor.diagnosis import baseline
from studiodoctor.cli import main
from studiodoctor.lab.servers.redis_server import RedisServer


def report(results):
    return {"profile": "p", "command": "check", "started_at": "2026-01-01T00:00:00+00:00",
            "results": [{"id": i, "layer": i.split(".")[0], "status": s, "evidence": e} for i, s, e in results]}


def test_changes_keep_what_matters_and_drop_what_moves_every_run():
    before = report([
        ("traefik.certificates", "ok", {"certificates": {"a": {"serial": "01", "issuer": "R3", "days_left": 60,
                                                              "not_after": "2027-01-01"}}}),
        ("redis.latency", "ok", {"median_ms": 0.4, "address": "10.0.0.1:6379"}),
        ("dns.resolves", "ok", {"answers": ["1.2.3.4", "1.2.3.5"], "latency_s": 0.01}),
        ("celery.queue_depth", "ok", {"total": 0, "checked_at": "x"})])
    now = report([
        ("celery.queue_depth", "warn", {"total": 120, "checked_at": "y"}),
        ("traefik.certificates", "ok", {"certificates": {"a": {"serial": "02", "issuer": "R3", "days_left": 59,
                                                              "not_after": "2027-03-01"}}}),
        ("redis.latency", "ok", {"median_ms": 9.9, "address": "10.0.0.1:6379"}),
        ("dns.resolves", "ok", {"answers": ["1.2.3.5", "1.2.3.4"], "latency_s": 0.5}),
        ("gcs.bucket", "ok", {"location": "US"})])
    found = baseline.changes(baseline.snapshot(before), now, ["dns", "traefik", "redis", "celery", "gcs"])
    assert [(c["check"], c["key"], c["before"], c["now"]) for c in found] == [
        ("traefik.certificates", "certificates.a.serial", "01", "02"),
        ("traefik.certificates", "certificates.a.not_after", "2027-01-01", "2027-03-01"),
        ("celery.queue_depth", "status", "ok", "warn"),
        ("celery.queue_depth", "total", 0, 120)]  # latencies, days left, timestamps, answer order: not news


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.delenv("STUDIODOCTOR_CONFIG", raising=False)

    def write(redis_url: str, name: str = "t") -> str:
        path = tmp_path / f"{name}.toml"
        path.write_text(f'default_profile = "{name}"\n[profiles.{name}]\ntimeout = 5\n'
                        f'[profiles.{name}.redis]\nurl = "{redis_url}"\n')
        return str(path)

    return write


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_save_then_diagnose_since_good_names_what_changed(capsys, config, redis_server, lab_root, tmp_path):
    base = str(tmp_path / "base.json")
    code, _, err = cli(capsys, "check", "--config", config(redis_server.url()), "-l", "redis", "--save-baseline",
                       "--baseline", base, "-f", "json")
    assert code == 0, err
    saved = json.loads(open(base).read())
    assert saved["schema"] == baseline.SCHEMA and "redis.reachable" in saved["results"]
    other = RedisServer(lab_root / "since-good-other").start()  # Redis moved: another address
    try:
        code, out, err = cli(capsys, "diagnose", "publishing", "--config", config(other.url()), "--since-good",
                             "--baseline", base, "-f", "json")
    finally:
        other.stop()
    since = json.loads(out)["since_good"]
    assert since["saved_at"] == saved["saved_at"]
    moved = [c for c in since["changes"] if c["check"] == "redis.reachable" and c["key"] == "address"]
    assert moved and moved[0]["before"].endswith(f":{redis_server.port}") and moved[0]["now"].endswith(f":{other.port}")


def test_a_run_with_failures_is_not_saved(capsys, config, tmp_path):
    base = tmp_path / "base.json"
    code, _, err = cli(capsys, "check", "--config", config("redis://127.0.0.1:1/0"), "-l", "redis", "--save-baseline",
                       "--baseline", str(base))
    assert code == 2 and not base.exists() and "baseline not saved" in err


def test_smoke_state_keeps_the_last_good_run_for_since_good(capsys, config, redis_server, tmp_path):
    state = str(tmp_path / "state.json")
    path = config(redis_server.url())
    assert cli(capsys, "smoke", "--config", path, "-l", "redis", "--state", state)[0] == 0
    assert json.loads(open(state).read())["baseline"]["results"]["redis.reachable"]["status"] == "ok"
    code, out, _ = cli(capsys, "diagnose", "publishing", "--config", path, "--since-good", "--baseline", state)
    assert "Since the last good run: 0 change(s)" in out


def test_no_baseline_yet_says_so_and_another_profile_is_refused(capsys, config, tmp_path):
    base = tmp_path / "base.json"
    code, out, _ = cli(capsys, "diagnose", "publishing", "--config", config("redis://127.0.0.1:1/0"),
                       "--since-good", "--baseline", str(base), "-f", "markdown")
    assert "no good run saved yet" in out
    base.write_text(json.dumps({"schema": baseline.SCHEMA, "profile": "elsewhere", "results": {}}))
    code, out, err = cli(capsys, "diagnose", "publishing", "--config", config("redis://127.0.0.1:1/0"),
                         "--since-good", "--baseline", str(base))
    assert code == 3 and "is for profile 'elsewhere'" in err


def test_since_good_names_a_latency_and_an_error_rate_regression_of_sampled_probes(make_profile):
    """A real app (loopback HTTP) fast and healthy in the good run, then answering in 300 ms with one
    request in two failing: --since-good leads with both regressions, though neither figure is news by
    itself (latencies move on every run)."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from studiodoctor import engine
    from studiodoctor.secrets import Redactor

    state = {"delay": 0.0, "fail_every": 0, "n": 0}
    lock = threading.Lock()

    class App(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            with lock:
                state["n"] += 1
                nth = state["n"]
            time.sleep(state["delay"])
            bad = state["fail_every"] and nth % state["fail_every"] == 0
            body = b"<3"
            self.send_response(500 if bad else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        profile = make_profile({"app": {"url": f"http://127.0.0.1:{server.server_port}"}}, timeout=8)

        def run():
            return engine.check(profile, check_ids=["app.stealthz"]).to_dict(Redactor(set()))

        good = baseline.snapshot(run())
        state.update(delay=0.3, fail_every=2)
        now = run()
    finally:
        server.shutdown()
        server.server_close()
    since = baseline.since_good(good, now, ["app"], "b.json")
    worse = [c for c in since["changes"] if c.get("regression")]
    assert since["regressions"] == 2 and [c["key"] for c in worse] == ["samples.p95_ms", "samples.failed"]
    assert worse[0]["regression"].startswith("p95 ") and "x the good run's" in worse[0]["regression"]
    assert worse[1]["now"].endswith(" of 5") and worse[1]["before"] == "0 of 5"
    assert "2 regression(s): app.stealthz p95" in since["note"]
