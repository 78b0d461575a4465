"""Through the CLI against a real redis-server: perfdata, the textfile collector, the Pushgateway."""

from __future__ import annotations

import os

import pytest

from studiodoctor.cli import main
from studiodoctor.lab.servers.redis_server import RedisServer

from test_formats import parse_perfdata, samples


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.delenv("STUDIODOCTOR_CONFIG", raising=False)

    def write(redis_url: str) -> str:
        path = tmp_path / "sd.toml"
        path.write_text(f'default_profile = "t"\n[profiles.t]\ntimeout = 5\n[profiles.t.redis]\nurl = "{redis_url}"\n'
                        '[profiles.t.postgres]\ndsn = ""\n')
        return str(path)

    return write


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_nagios_perfdata_from_a_real_redis(capsys, config, redis_server):
    code, out, err = cli(capsys, "check", "--config", config(redis_server.url()), "-l", "redis", "-f", "nagios")
    assert code == 0, out + err
    status, _, perf = out.split("\n")[0].partition(" | ")
    assert status.startswith("STUDIODOCTOR OK - ")
    median = parse_perfdata(perf)["redis.latency median_ms"]
    assert median[1:] == ("ms", "100", "1000", "0", "") and 0 < median[0] < 100


def test_nagios_critical_when_redis_is_down(capsys, config, redis_server):
    path = config(redis_server.url())
    redis_server.stop()
    code, out, _ = cli(capsys, "check", "--config", path, "-l", "redis", "-f", "nagios")
    assert code == 2
    assert out.startswith("STUDIODOCTOR CRITICAL - 1 fail: redis.reachable (check, profile t,")
    assert "[FAIL] redis.reachable:" in out and "[BLOCKED] redis.latency:" in out


def test_textfile_is_written_atomically_for_node_exporter(capsys, config, redis_server, tmp_path):
    outdir = tmp_path / "textfile"
    outdir.mkdir()
    code, out, err = cli(capsys, "check", "--config", config(redis_server.url()), "-l", "redis",
                         "--format", "json", "--textfile", str(outdir))
    assert code == 0, err
    assert out.lstrip().startswith("{")  # stdout keeps the chosen format
    assert os.listdir(outdir) == ["studiodoctor_check_t.prom"]  # no temporary file left behind
    fams = samples((outdir / "studiodoctor_check_t.prom").read_text())
    assert {s.labels["check"] for s in fams["studiodoctor_check_status"]} >= {"redis.reachable", "redis.latency"}
    assert all(s.value == 0 for s in fams["studiodoctor_check_status"])


def test_textfile_must_be_a_directory(capsys, config, tmp_path):
    code, out, err = cli(capsys, "check", "--config", config("redis://127.0.0.1:1/0"), "-l", "redis",
                         "--textfile", str(tmp_path / "missing"))
    assert code == 3 and out == "" and "not a directory" in err


def test_pushgateway_receives_the_metrics_grouped_by_job_and_instance(capsys, config, redis_server, httpserver):
    httpserver.expect_request("/metrics/job/studiodoctor/instance/t", method="PUT").respond_with_data("", status=200)
    code, out, err = cli(capsys, "check", "--config", config(redis_server.url()), "-l", "redis",
                         "--format", "nagios", "--pushgateway", httpserver.url_for("/"))
    assert code == 0, err
    httpserver.check_assertions()
    (request, _), = httpserver.log
    fams = samples(request.get_data(as_text=True))
    assert {s.labels["check"] for s in fams["studiodoctor_check_status"]} >= {"redis.reachable"}
    assert fams["studiodoctor_run_timestamp_seconds"][0].value > 0


def test_pushgateway_refusing_is_one_line_and_exit_3(capsys, config, redis_server, httpserver):
    httpserver.expect_request("/metrics/job/studiodoctor/instance/t", method="PUT").respond_with_data("no", status=500)
    code, out, err = cli(capsys, "check", "--config", config(redis_server.url()), "-l", "redis",
                         "--pushgateway", httpserver.url_for("/"))
    assert code == 3
    assert err.startswith("studiodoctor: --pushgateway") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("fmt", ["nagios", "prometheus", "junit"])
def test_no_secret_in_the_automation_formats(capsys, config, lab_root, fmt):
    secret = "Hunter2-Redis-Secret"
    server = RedisServer(lab_root / f"leak-{fmt}", password="the-right-one").start()
    try:
        path = config(f"redis://:{secret}@127.0.0.1:{server.port}/0")
        code, out, err = cli(capsys, "check", "--config", path, "-l", "redis", "--debug", "-f", fmt)
    finally:
        server.stop()
    assert code in (2, 3)
    assert secret not in out + err
