"""Import only what runs: a run imports the SDKs of the checks it will run, and nothing for layers it
does not run or that are skipped (their keys unset), even when the profile configures them."""

import subprocess
import sys

HEAVY = ("kubernetes", "google.cloud", "cloudflare", "psycopg", "celery", "dns.resolver", "redis", "httpx")
CONFIGURED = """
[profiles.t.redis]
url = "redis://127.0.0.1:9/0"
[profiles.t.postgres]
dsn = "postgresql://u@127.0.0.1:9/db"
[profiles.t.kubernetes]
api_url = "https://127.0.0.1:9"
namespace = "studio"
[profiles.t.gcs]
bucket = "b"
[profiles.t.cloudflare]
api_token = "t0ken"
zone = "example.org"
api_url = "http://127.0.0.1:9/client/v4"
"""


def _imported_after(config, *args):
    code = ("import sys; from studiodoctor.cli import main; rc = main(['check', '--config', %r, '--profile', 't', "
            "'--format', 'json', '--timeout', '2', *%r]); "
            "print('RC', rc, [m for m in %r if m in sys.modules])" % (str(config), list(args), HEAVY))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    return out.strip().splitlines()[-1]


def test_check_layer_redis_imports_no_other_sdk_though_all_are_configured(tmp_path):
    config = tmp_path / "sd.toml"
    config.write_text(CONFIGURED)  # nothing listens on port 9
    assert _imported_after(config, "--layer", "redis") == "RC 2 ['redis']"


def test_a_skipped_layer_imports_nothing(tmp_path):
    config = tmp_path / "sd.toml"
    config.write_text('[profiles.t.redis]\nurl = "redis://127.0.0.1:9/0"\n')  # postgres, cloudflare: no keys
    assert _imported_after(config, "--layer", "redis", "--layer", "postgres", "--layer", "cloudflare") == \
        "RC 2 ['redis']"


def test_parsing_the_command_line_imports_no_pydantic(tmp_path):
    """typer 0.29 builds a pydantic TypeAdapter per option on every start (~0.13 s): pyproject keeps typer
    below it. A run that takes every kind of option (text, number, choice, repeated) parses without it."""
    config = tmp_path / "sd.toml"
    config.write_text('[profiles.t.redis]\nurl = "redis://127.0.0.1:9/0"\n')
    code = ("import sys; from studiodoctor.cli import main; main(['check', '--config', %r, '--profile', 't', "
            "'--format', 'json', '--timeout', '2', '--layer', 'redis', '--layer', 'postgres']); "
            "print('pydantic' in sys.modules)" % str(config))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_a_run_imports_no_httpx_command_line_client(tmp_path):
    """httpx's __init__ imports its own CLI (click, rich, pygments: a third of `import httpx`): kept out."""
    config = tmp_path / "sd.toml"
    config.write_text('[profiles.t]\npublic_urls = ["http://127.0.0.1:9/"]\n[profiles.t.nginx]\nurl = "http://127.0.0.1:9"\n')
    code = ("import sys; from studiodoctor.cli import main; rc = main(['check', '--config', %r, '--profile', 't', "
            "'--format', 'json', '--timeout', '2', '--layer', 'nginx']); "
            "print('RC', rc, 'httpx' in sys.modules, [m for m in ('httpx._main', 'pygments', 'click') "
            "if sys.modules.get(m) is not None])" % str(config))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.strip().splitlines()[-1] == "RC 2 True []", out


def test_a_second_start_reads_no_distribution_metadata(tmp_path):
    """The entry points are cached (studiodoctor.plugins): once the cache is written, starting the CLI
    does not import importlib.metadata (email, zipfile, csv) nor read 96 distributions' metadata."""
    import os

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    code = ("import sys; from studiodoctor.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass\n"
            "print('METADATA', 'importlib.metadata' in sys.modules)")
    first, second = (subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                                    env=env, cwd=tmp_path).stdout.strip().splitlines()[-1] for _ in range(2))
    assert (first, second) == ("METADATA True", "METADATA False")
