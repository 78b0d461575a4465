"""End to end through the CLI, in-process, against the lab's real Redis and PostgreSQL."""

import json

import pytest

from studiodoctor.cli import main
from studiodoctor.lab.servers.postgres_server import PostgresServer
from studiodoctor.lab.servers.redis_server import RedisServer

RESULT_FIELDS = {"id", "layer", "title", "status", "summary", "evidence", "hint", "commands", "duration_ms",
                 "blocked_by", "reason"}
REPORT_FIELDS = {"schema", "tool", "command", "symptom", "profile", "started_at", "duration_ms", "status",
                 "exit_code", "results", "runbook", "likely_cause"}
STEP_FIELDS = {"step", "layer", "title", "verdict", "checks", "why", "commands"}


@pytest.fixture
def config(tmp_path, monkeypatch):
    """write(redis_url, dsn, extra="") -> path of a config whose `t` profile points at them via ${VAR}s."""
    monkeypatch.delenv("STUDIODOCTOR_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)

    def write(redis_url="", dsn="", extra=""):
        monkeypatch.setenv("SD_TEST_REDIS", redis_url)
        monkeypatch.setenv("SD_TEST_DSN", dsn)
        path = tmp_path / "sd.toml"
        path.write_text('default_profile = "t"\n[profiles.t]\ntimeout = 5\n'
                        '[profiles.t.redis]\nurl = "${SD_TEST_REDIS}"\n'
                        '[profiles.t.postgres]\ndsn = "${SD_TEST_DSN}"\n' + extra)
        return str(path)

    return write


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def redis_up(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-redis")
    server = RedisServer(root, password="r3dis-Secret-77").start()
    yield server
    server.stop()


def test_healthy_redis_and_postgres_all_ok_with_every_json_field(capsys, config, redis_up, postgres_server):
    path = config(redis_up.url(), postgres_server.dsn())
    code, out, err = cli(capsys, "check", "--config", path, "--layer", "redis", "--layer", "postgres",
                         "--format", "json")
    report = json.loads(out)
    bad = [(r["id"], r["status"], r["summary"]) for r in report["results"] if r["status"] != "ok"]
    assert bad == [] and code == 0
    assert REPORT_FIELDS <= set(report)
    assert report["schema"] == "studiodoctor.report/1" and report["exit_code"] == 0
    assert {r["layer"] for r in report["results"]} == {"redis", "postgres"}
    assert all(RESULT_FIELDS <= set(r) for r in report["results"])


def test_diagnose_database_with_postgres_stopped_names_postgres(capsys, config, tmp_path):
    pg = PostgresServer(tmp_path / "pg-stopped").start()
    pg.stop()
    path = config("", pg.dsn())
    code, out, err = cli(capsys, "diagnose", "database", "--config", path, "--format", "json")
    report = json.loads(out)
    assert code == 2
    assert report["likely_cause"]["layer"] == "postgres"
    assert f"127.0.0.1:{pg.port}" in json.dumps(report["likely_cause"]["evidence"])
    assert STEP_FIELDS <= set(report["runbook"][0])
    assert report["runbook"][0]["layer"] == "postgres" and report["runbook"][0]["verdict"] == "fail"


def test_diagnose_publishing_with_redis_stopped_names_redis(capsys, config, tmp_path, postgres_server):
    redis = RedisServer(tmp_path / "r").start()
    redis.stop()
    path = config(redis.url(), postgres_server.dsn())
    code, out, err = cli(capsys, "diagnose", "publishing", "--config", path, "--format", "json")
    report = json.loads(out)
    assert code == 2
    assert report["likely_cause"]["layer"] == "redis"
    assert report["likely_cause"]["check"] == "redis.reachable"


def test_user_defined_symptom_from_config(capsys, config, tmp_path):
    redis = RedisServer(tmp_path / "r2").start()
    redis.stop()
    extra = ('[symptoms.cache-down]\ntitle = "The Django cache is down"\naliases = ["NoCache"]\n'
             '[[symptoms.cache-down.steps]]\nlayer = "redis"\nwhy = "The cache lives in Redis DB 1"\n'
             'commands = [{text = "redis-cli -u {redis_url} PING", safety = "read-only"}]\n')
    path = config(redis.url(), "", extra)
    code, out, err = cli(capsys, "diagnose", "nocache", "--config", path, "--format", "markdown")
    assert code == 2
    assert "diagnose `cache-down`" in out
    assert "## Likely cause" in out and "**redis**" in out
    assert f"redis-cli -u redis://127.0.0.1:{redis.port}/0 PING" in out
    code, out, err = cli(capsys, "symptoms", "--config", path)
    assert "cache-down (NoCache): redis" in out


def test_502_markdown_walks_all_seven_layers_in_order(capsys, config, redis_up, postgres_server):
    # "is it me?" (layer local) leads every walk, then the seven layers of the 502 walk
    walk = ["local", "cloudflare", "traefik", "kubernetes", "nginx", "app", "postgres", "redis"]
    path = config(redis_up.url(), postgres_server.dsn())
    code, out, err = cli(capsys, "diagnose", "502", "--config", path, "--format", "markdown")
    # "### 3. ✅ kubernetes: Kubernetes: deployments and pods — ok"
    steps = [(line.split(" ")[3].rstrip(":"), line.rsplit(" — ", 1)[1]) for line in out.splitlines()
             if line.startswith("### ")]
    assert sorted(layer for layer, _ in steps) == sorted(walk)
    verdict_order = ["fail", "warn", "inconclusive", "manual", "skipped", "ok"]
    assert steps == sorted(steps, key=lambda s: (verdict_order.index(s[1]), walk.index(s[0])))
    assert dict(steps)["redis"] == "ok" and dict(steps)["postgres"] == "ok"
    assert "redis.reachable" in out and "postgres.reachable" in out
    assert "kubectl" in out  # manual steps keep their commands


@pytest.mark.parametrize("fmt", ["table", "json", "markdown"])
def test_secrets_appear_in_no_output(capsys, config, tmp_path, postgres_server, fmt):
    pw_pg, pw_redis = "Pg-Hunter2-Secret", "Redis-Hunter3-Secret"
    redis = RedisServer(tmp_path / "rs", password="another-one").start()
    try:
        wrong_pw = postgres_server.dsn(password=pw_pg)                  # wrong password: server says so
        wrong_redis = f"redis://:{pw_redis}@127.0.0.1:{redis.port}/0"   # wrong password too
        path = config(wrong_redis, wrong_pw)
        outputs = []
        for args in (["check"], ["check", "--debug"], ["diagnose", "502", "--debug"],
                     ["check", "--layer", "postgres", "--layer", "redis"], ["config", "show"]):
            code, out, err = cli(capsys, *args, "--config", path, *(["--format", fmt] if args[0] != "config" else []))
            outputs.append(out + err)
        redis.stop()
        code, out, err = cli(capsys, "check", "--config", path, "--debug", "--format", fmt)
        outputs.append(out + err)
    finally:
        redis.stop()
    text = "\n".join(outputs)
    assert "password authentication failed" in text or "auth" in text.lower()
    assert pw_pg not in text and pw_redis not in text
