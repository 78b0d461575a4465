"""Bad input, counted: every one gives exit 3 and ONE clear line on stderr, no traceback, nothing on
stdout, and nothing written (not in the working directory, not a lab directory)."""

from __future__ import annotations

import fnmatch
import os

import pytest

from studiodoctor.cli import main

GOOD = '[profiles.p]\ntimeout = 5.0\n[profiles.p.redis]\nurl = "redis://127.0.0.1:1/0"\n'

# (id, config text or bytes or None, argv (CONFIG = the file), env, fragment the line must contain)
CASES = [
    # broken TOML and unreadable files
    ("toml-unclosed-table", "[profiles.p\nx=1", ["config", "validate", "--config", "CONFIG"], {}, "not valid TOML"),
    ("toml-missing-value", "timeout =\n", ["config", "validate", "--config", "CONFIG"], {}, "not valid TOML"),
    ("toml-duplicate-key", "default_profile='a'\ndefault_profile='b'\n", ["check", "--config", "CONFIG"], {}, "not valid TOML"),
    ("toml-bad-string", '[profiles.p]\nx = "unterminated\n', ["check", "--config", "CONFIG"], {}, "not valid TOML"),
    ("toml-binary", b"\xff\xfe\x00\x01garbage", ["config", "show", "--config", "CONFIG"], {}, "CONFIG"),
    ("toml-latin1", b'[profiles.p]\nname = "caf\xe9"\n', ["config", "show", "--config", "CONFIG"], {}, "CONFIG"),
    ("file-missing", None, ["check", "--config", "/nonexistent/studiodoctor.toml"], {}, "not found"),
    ("file-is-directory", None, ["check", "--config", "/tmp"], {}, "not found"),
    ("env-config-missing", None, ["config", "show"], {"STUDIODOCTOR_CONFIG": "/nonexistent/x.toml"}, "$STUDIODOCTOR_"),
    # unknown keys, with a did-you-mean where one is close
    ("top-level-unknown", "bogus = 1\n", ["check", "--config", "CONFIG"], {}, "unknown top-level key 'bogus'"),
    ("top-level-typo", "[profile.p]\ntimeout = 1.0\n", ["check", "--config", "CONFIG"], {}, "did you mean profiles"),
    ("section-typo", '[profiles.p.redsi]\nurl = "redis://x"\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "did you mean redis"),
    ("key-typo", '[profiles.p.redis]\nulr = "redis://x"\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "did you mean url"),
    ("key-typo-kube", '[profiles.p.kubernetes]\nnamspace = "studio"\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "did you mean namespace"),
    ("key-typo-top", '[profiles.p]\ntimout = 3.0\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "did you mean timeout"),
    ("key-typo-gcs", '[profiles.p.gcs]\nbukcet = "content"\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "did you mean bucket"),
    # wrong types
    ("type-timeout-string", '[profiles.p]\ntimeout = "soon"\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "profiles.p.timeout"),
    ("type-timeout-negative", '[profiles.p]\ntimeout = -1.0\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "positive number"),
    ("type-timeout-zero", '[profiles.p]\ntimeout = 0\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "positive number"),
    ("type-timeout-bool", '[profiles.p]\ntimeout = true\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "positive number"),
    ("type-timeout-nan", '[profiles.p]\ntimeout = nan\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "positive number"),
    ("type-timeout-inf", '[profiles.p]\ntimeout = inf\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "positive number"),
    ("type-hostnames-string", '[profiles.p.dns]\nhostnames = "a.example"\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "list of strings"),
    ("type-hostnames-ints", '[profiles.p.dns]\nhostnames = [1, 2]\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "list of strings"),
    ("type-redis-url-int", '[profiles.p.redis]\nurl = 6379\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "expected a string"),
    ("type-section-string", '[profiles.p]\nredis = "redis://x"\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "expected a table"),
    ("type-profile-string", 'profiles = { p = "x" }\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "expected a table"),
    ("type-profiles-int", 'profiles = 3\n', ["check", "--config", "CONFIG"], {}, "profiles"),
    ("type-default-profile-int", 'default_profile = 5\n', ["check", "--config", "CONFIG"], {}, "default_profile"),
    ("type-resolve-value", '[profiles.p.http.resolve]\n"a.example:443" = 443\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "host:port"),
    ("type-resolve-key", '[profiles.p.http.resolve]\n"a.example" = "127.0.0.1:443"\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "host:port"),
    ("type-queues-string", '[profiles.p.celery]\nqueues = "celery"\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "list of strings"),
    ("type-symptoms-int", 'symptoms = 3\n', ["diagnose", "502", "--config", "CONFIG"], {}, "symptoms"),
    ("symptom-no-steps", '[symptoms.slowish]\ntitle = "x"\n', ["diagnose", "slowish", "--config", "CONFIG"], {}, "steps"),
    ("symptom-step-no-layer", '[[symptoms.slowish.steps]]\nwhy = "x"\n', ["symptoms", "--config", "CONFIG"], {}, "layer"),
    ("symptom-aliases-string", '[symptoms.slowish]\naliases = "slow"\n[[symptoms.slowish.steps]]\nlayer = "redis"\n', ["symptoms", "--config", "CONFIG"], {}, "aliases"),
    # ${VAR} references
    ("var-loop", '[profiles.p.redis]\nurl = "${A}"\n', ["check", "-p", "p", "--config", "CONFIG"], {"A": "${B}", "B": "${A}"}, "${A}"),
    ("var-nested", '[profiles.p.postgres]\ndsn = "${DSN}"\n', ["config", "validate", "-p", "p", "--config", "CONFIG"], {"DSN": "postgresql://${USER_X}@h/db"}, "${DSN}"),
    ("var-malformed", '[profiles.p.redis]\nurl = "${REDIS_URL"\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "${"),
    ("var-empty-name", '[profiles.p.redis]\nurl = "${}"\n', ["check", "-p", "p", "--config", "CONFIG"], {}, "${"),
    ("var-unset-asked-layer", '[profiles.p.redis]\nurl = "${NOT_SET_H17}"\n', ["check", "-p", "p", "--layer", "redis", "--config", "CONFIG"], {}, "NOT_SET_H17"),
    # profiles
    ("profile-missing", GOOD, ["check", "-p", "nope", "--config", "CONFIG"], {}, "unknown profile 'nope'"),
    ("profile-missing-diagnose", GOOD, ["diagnose", "502", "-p", "nope", "--config", "CONFIG"], {}, "unknown profile"),
    ("profile-missing-show", GOOD, ["config", "show", "-p", "nope", "--config", "CONFIG"], {}, "unknown profile"),
    ("default-profile-missing", 'default_profile = "nope"\n', ["check", "--config", "CONFIG"], {}, "unknown profile 'nope'"),
    # names on the command line
    ("unknown-symptom", GOOD, ["diagnose", "teapot", "-p", "p", "--config", "CONFIG"], {}, "unknown symptom"),
    ("unknown-symptom-typo", GOOD, ["diagnose", "publsihing", "-p", "p", "--config", "CONFIG"], {}, "did you mean"),
    ("unknown-layer", GOOD, ["check", "--layer", "redsi", "-p", "p", "--config", "CONFIG"], {}, "did you mean redis"),
    ("unknown-check", GOOD, ["check", "--check", "redis.pign", "-p", "p", "--config", "CONFIG"], {}, "unknown check id"),
    ("unknown-format", GOOD, ["check", "--format", "yaml", "-p", "p", "--config", "CONFIG"], {}, "unknown format"),
    ("unknown-format-diagnose", GOOD, ["diagnose", "502", "--format", "xml", "-p", "p", "--config", "CONFIG"], {}, "unknown format"),
    ("unknown-format-symptoms", GOOD, ["symptoms", "--format", "yaml", "--config", "CONFIG"], {}, "unknown format"),
    ("unknown-format-list", None, ["list", "--format", "yaml"], {}, "unknown format"),
    ("unknown-format-config-show", GOOD, ["config", "show", "--format", "yaml", "--config", "CONFIG"], {}, "unknown format"),
    ("unknown-list-layer", None, ["list", "--layer", "postgress"], {}, "did you mean postgres"),
    ("unknown-explain", None, ["explain", "redis.pign"], {}, "did you mean"),
    ("negative-timeout", GOOD, ["check", "--timeout", "-1", "-p", "p", "--config", "CONFIG"], {}, "--timeout"),
    ("zero-timeout", GOOD, ["check", "--timeout", "0", "-p", "p", "--config", "CONFIG"], {}, "--timeout"),
    ("nan-timeout", GOOD, ["check", "--timeout", "nan", "-p", "p", "--config", "CONFIG"], {}, "--timeout"),
    ("text-timeout", GOOD, ["check", "--timeout", "soon", "-p", "p", "--config", "CONFIG"], {}, "'soon' is not a number"),
    ("negative-max-objects", GOOD, ["check", "--max-objects", "-5", "-p", "p", "--config", "CONFIG"], {}, "--max-objects"),
    ("unknown-option", None, ["check", "--bogus"], {}, "--bogus"),
    ("unknown-command", None, ["chekc"], {}, "chekc"),
    ("missing-symptom", None, ["diagnose"], {}, "symptom"),
    ("unknown-fault", None, ["lab", "break", "teapot"], {}, "teapot"),
    ("drill-nothing", None, ["lab", "drill"], {}, "drill"),
]


@pytest.mark.parametrize("name, text, argv, env, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_3_and_writes_nothing(tmp_path, monkeypatch, capsys, name, text, argv, env,
                                                          fragment):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(work))
    monkeypatch.setenv("STUDIODOCTOR_LAB_DIR", str(tmp_path / "lab"))
    monkeypatch.delenv("STUDIODOCTOR_CONFIG", raising=False)
    cache = tmp_path / "xdg-cache"   # the start-up's own cache of entry points (studiodoctor.plugins) goes here
    cache.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = tmp_path / "studiodoctor.toml"
    if text is not None:
        config.write_bytes(text if isinstance(text, bytes) else text.encode())
    argv = [str(config) if a == "CONFIG" else a for a in argv]
    before = sorted(os.listdir(tmp_path)), sorted(os.listdir(work))

    code = main(argv)
    out, err = capsys.readouterr()

    lines = err.strip().splitlines()
    assert code == 3, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("studiodoctor: "), err
    assert "Traceback" not in err and "internal error" not in err
    assert fragment.replace("CONFIG", str(config)) in lines[0], lines[0]
    assert out == ""
    assert (sorted(os.listdir(tmp_path)), sorted(os.listdir(work))) == before
    # any start may cache the installed entry points, the input good or bad; nothing else is written there
    cached = [p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file()]
    assert all(fnmatch.fnmatch(p, "studiodoctor/entry-points-*.json") for p in cached), cached


def test_at_least_fifty_bad_inputs():
    assert len(CASES) >= 50
