"""The CLI in-process: exit codes, one-line errors, formats, no heavy imports at start-up."""

import json
import subprocess
import sys

import pytest

from studiodoctor import __version__
from studiodoctor.cli import main

HEAVY = ("kubernetes", "google.cloud.storage", "cloudflare", "celery", "redis", "psycopg", "dns.resolver", "httpx")


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err):
    lines = err.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith("studiodoctor: ") and "Traceback" not in err


def test_version(capsys):
    assert cli(capsys, "--version") == (0, f"studiodoctor {__version__}\n", "")


@pytest.mark.parametrize("args", [["--help"], ["list"], ["symptoms"], ["explain", "502"], ["config", "show"]])
def test_light_commands_import_no_heavy_sdk(args):
    code = ("import sys; from studiodoctor.cli import main; rc = main(%r); "
            "print([m for m in %r if m in sys.modules])" % (args, HEAVY))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip().splitlines()[-1] == "[]"


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STUDIODOCTOR_CONFIG", raising=False)

    def write(text):
        path = tmp_path / "studiodoctor.toml"
        path.write_text(text)
        return str(path)

    return write


@pytest.mark.parametrize("args, text, fragment", [
    (["check", "--layer", "redsi"], "", "unknown layer 'redsi' (did you mean redis"),
    (["check", "--check", "redis.nope"], "", "unknown check id 'redis.nope'"),
    (["check", "--profile", "nope"], "", "unknown profile 'nope'"),
    (["check"], "[profiles.production\n", "not valid TOML"),
    (["check"], '[profiles.production]\ntimeout = "x"\n', "profiles.production.timeout: expected a positive number"),
    (["check", "--layer", "redis"], "", "redis.url: ${STUDIO_REDIS_URL} is not set"),
    (["check", "--format", "yaml"], "", "unknown format 'yaml'"),
    (["check", "--timeout", "0"], "", "--timeout must be a positive number"),
    (["check", "--bogus"], "", "No such option: --bogus"),
    (["check", "--samples", "0"], "", "--samples must be between 1 and 20"),
    (["diagnose", "502", "--samples", "21"], "", "--samples must be between 1 and 20"),
    (["check"], "[profiles.production]\nsamples = 0\n", "profiles.production.samples: expected a positive integer"),
    (["diagnose", "5O2"], "", "unknown symptom '5o2'"),
    (["explain", "gcs.nope"], "", "nothing called 'gcs.nope'"),
])
def test_bad_input_is_one_line_and_exit_3(capsys, config_file, monkeypatch, args, text, fragment):
    monkeypatch.delenv("STUDIO_REDIS_URL", raising=False)
    config_file(text)
    code, out, err = cli(capsys, *args)
    assert code == 3
    assert one_line_error(err), err
    assert fragment.lower() in err.lower()


def test_config_show_redacts_secrets(capsys, config_file, monkeypatch):
    monkeypatch.setenv("MY_DSN", "postgresql://studio:pa55-w0rd-x@10.9.8.7:5432/studio")
    config_file('[profiles.production.postgres]\ndsn = "${MY_DSN}"\n')
    for fmt in ("table", "json"):
        code, out, err = cli(capsys, "config", "show", "--format", fmt)
        assert code == 0
        assert "10.9.8.7" in out and "pa55-w0rd-x" not in out


def test_config_validate_notes_unset_variables(capsys, config_file, monkeypatch):
    monkeypatch.delenv("STUDIO_REDIS_URL", raising=False)
    config_file("")
    code, out, err = cli(capsys, "config", "validate")
    assert code == 0
    assert "redis.url refers to ${STUDIO_REDIS_URL}, which is not set" in out


def test_list_and_explain(capsys):
    code, out, _ = cli(capsys, "list", "--format", "json")
    checks = json.loads(out)
    assert code == 0
    assert all({"id", "layer", "safety", "needs"} <= set(c) for c in checks)
    code, out, _ = cli(capsys, "explain", "502")
    assert code == 0 and "1. cloudflare" in out and "7. redis" in out


def test_a_run_imports_only_the_sdks_of_the_layers_it_runs(tmp_path):
    config = tmp_path / "sd.toml"
    config.write_text('[profiles.t.redis]\nurl = "redis://127.0.0.1:9/0"\n')  # nothing listens on port 9
    code = ("import sys; from studiodoctor.cli import main; rc = main(['check', '--config', %r, '--profile', 't', "
            "'--layer', 'redis', '--format', 'json', '--timeout', '2']); "
            "print('RC', rc, [m for m in %r if m in sys.modules])" % (str(config), HEAVY))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip().splitlines()[-1] == "RC 2 ['redis']"


def test_config_show_masks_basic_auth_credentials(capsys, config_file, monkeypatch):
    """traefik.api_auth is "user:password": before, printed in clear even from ${VAR}."""
    monkeypatch.setenv("TRAEFIK_AUTH", "doctor:s3cret-pw-77")
    config_file('[profiles.production.traefik]\napi_auth = "${TRAEFIK_AUTH}"\n'
                '[profiles.production.traefik.extra]\nbasic_auth = "ops:inline-pw-99"\n')
    for fmt in ("table", "json"):
        code, out, err = cli(capsys, "config", "show", "--format", fmt)
        assert code == 0
        assert "s3cret-pw-77" not in out and "inline-pw-99" not in out
        assert "api_auth" in out


def test_basic_auth_value_and_its_header_form_are_secrets():
    import base64

    from studiodoctor.secrets import Redactor, secrets_in_value

    found = secrets_in_value("api_auth", "doctor:s3cret-pw-77")
    assert "s3cret-pw-77" in found
    header = base64.b64encode(b"doctor:s3cret-pw-77").decode()
    assert header in found
    assert header not in Redactor(found).text(f"sent Authorization {header}")


def test_permissions_check_declares_it_creates_access_reviews():
    from studiodoctor.model import EPHEMERAL_WRITE
    from studiodoctor.registry import default_registry

    chk = default_registry.load_plugins().get("kubernetes.permissions")
    assert chk.safety == EPHEMERAL_WRITE
    assert any("create selfsubjectaccessreviews" in p for p in chk.permissions)


def test_no_context_flag_bypasses_the_read_only_method_guard():
    from types import SimpleNamespace

    from studiodoctor.probes import http as httpprobe

    ctx = SimpleNamespace(allow_unsafe_methods=True, section=lambda name: {}, timeout=lambda cap=None: 1.0)
    with pytest.raises(ValueError, match="not a read-only method"):
        httpprobe.request(ctx, "POST", "http://127.0.0.1:9/")


def test_config_show_says_which_value_each_fallback_used(capsys, config_file):
    config_file('[profiles.production.cloudflare]\nzone = "example.org"\n')
    code, out, _ = cli(capsys, "config", "show")
    assert code == 0 and 'zone = "example.org"  # fallback: from cloudflare.zone' in out
    code, out, _ = cli(capsys, "config", "show", "--format", "json")
    assert json.loads(out)["derived"]["dns.zone"] == {"value": "example.org", "from": "from cloudflare.zone"}


def test_a_run_as_a_process_writes_its_whole_report_and_exit_code(tmp_path):
    """The console script leaves without the interpreter's teardown (cli.main): what it wrote must all be
    there, through a pipe, with the run's exit code."""
    from pathlib import Path

    config = tmp_path / "sd.toml"
    config.write_text('[profiles.t.redis]\nurl = "redis://127.0.0.1:9/0"\n')  # nothing listens on port 9
    exe = Path(sys.executable).with_name("studiodoctor")
    for fmt in ("json", "markdown"):
        proc = subprocess.run([str(exe), "check", "--config", str(config), "--profile", "t", "--layer", "redis",
                               "--format", fmt, "--timeout", "2"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, f"{fmt}: exit {proc.returncode}, stderr {proc.stderr[-500:]!r}"
        if fmt == "json":
            report = json.loads(proc.stdout)  # complete: it parses
            assert report["results"][0]["id"] == "redis.reachable", report["results"][0]
        assert "redis.rejected_connections" in proc.stdout, proc.stdout[-300:]
        assert proc.stderr == "", proc.stderr[-500:]


@pytest.mark.parametrize("args, collects", [(["list"], False), (["serve", "--help"], True)])
def test_the_collector_is_back_for_a_command_that_keeps_running(args, collects):
    """As a process, a one-shot command runs with the cyclic collector off (cli.main); one that keeps running
    (serve, a plugin's command, diagnose --watch) turns it back on before it starts."""
    code = ("import gc, sys; from studiodoctor import cli; gc.disable(); rc = cli._main(%r); "
            "print('COLLECTS', gc.isenabled())" % (args,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip().splitlines()[-1] == f"COLLECTS {collects}", out[-500:]
