"""Config: search order, profiles, ${VAR} references and one-line validation errors."""

import pytest

from studiodoctor.config import ConfigError, Unset, find_config_file, load_profile


def write(tmp_path, text, name="studiodoctor.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_builtin_production_profile_needs_no_file(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STUDIODOCTOR_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    prof = load_profile(env={})
    assert prof.name == "production"
    assert prof.value("public_urls") == ["https://studio.learningequality.org"]
    assert prof.value("gcs.bucket") == "studio-content"
    assert isinstance(prof.value("redis.url"), Unset) and prof.value("redis.url").var == "STUDIO_REDIS_URL"


def test_search_order_explicit_then_env_then_cwd(monkeypatch, tmp_path):
    cwd = write(tmp_path, 'default_profile = "staging"\n')
    other = write(tmp_path, 'default_profile = "production"\n', "other.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STUDIODOCTOR_CONFIG", raising=False)
    assert find_config_file() == cwd.relative_to(tmp_path)
    monkeypatch.setenv("STUDIODOCTOR_CONFIG", str(other))
    assert find_config_file() == other
    assert find_config_file(str(cwd)) == cwd


def test_variables_are_substituted_and_their_secrets_collected(tmp_path):
    path = write(tmp_path, '[profiles.p.redis]\nurl = "${R}"\n[profiles.p.cloudflare]\napi_token = "${T}"\n')
    prof = load_profile("p", str(path), env={"R": "redis://:pw-9x7@10.0.0.1:6379/0", "T": "tok-abcdef"})
    assert prof.value("redis.url") == "redis://:pw-9x7@10.0.0.1:6379/0"
    assert {"pw-9x7", "tok-abcdef"} <= prof.secrets
    assert "pw-9x7" not in str(prof.redacted())


def test_user_profile_merges_over_builtin_of_same_name(tmp_path):
    path = write(tmp_path, '[profiles.production.nginx]\nurl = "http://127.0.0.1:8080"\n')
    prof = load_profile("production", str(path), env={})
    assert prof.value("nginx.url") == "http://127.0.0.1:8080"
    assert prof.value("gcs.bucket") == "studio-content"


@pytest.mark.parametrize("text, fragment", [
    ("[profiles.p\nx=1", "not valid TOML"),
    ('[profiles.p]\ntimeout = "soon"', "profiles.p.timeout: expected a positive number"),
    ('[profiles.p.dns]\nhostnames = "studio.example"', "profiles.p.dns.hostnames: expected a list of strings"),
    ('[profiles.p.redis]\nurl = 6379', "profiles.p.redis.url: expected a string"),
    ('bogus = 1', "unknown top-level key 'bogus'"),
])
def test_bad_config_is_one_line_naming_file_and_key(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_profile("p", str(path), env={})
    message = str(info.value)
    assert fragment in message and str(path) in message and "\n" not in message


def test_unknown_profile_lists_known_ones(tmp_path):
    path = write(tmp_path, "[profiles.mine]\n")
    with pytest.raises(ConfigError, match=r"unknown profile 'nope' \(known: .*mine.*production"):
        load_profile("nope", str(path), env={})


def test_fallbacks_fill_needed_keys_from_the_contract_and_say_so(tmp_path):
    path = write(tmp_path, '[profiles.p]\npublic_urls = ["https://studio.example.org/"]\n'
                           '[profiles.p.cloudflare]\nzone = "example.org"\n'
                           '[profiles.p.redis]\nurl = "redis://10.0.0.5:6379/0"\n')
    prof = load_profile("p", str(path), env={})
    assert prof.value("dns.hostnames") == ["studio.example.org"]
    assert prof.value("dns.zone") == "example.org"
    assert prof.value("celery.broker_url") == "redis://10.0.0.5:6379/0"
    assert prof.derived == {"dns.hostnames": "from public_urls", "dns.zone": "from cloudflare.zone",
                            "celery.broker_url": "from redis.url"}


def test_zone_derived_from_hostnames_when_no_zone_is_given(tmp_path):
    path = write(tmp_path, '[profiles.p.dns]\nhostnames = ["hotfixes.studio.example.org"]\n')
    prof = load_profile("p", str(path), env={})
    assert prof.value("dns.zone") == prof.value("cloudflare.zone") == "example.org"
    assert prof.derived["cloudflare.zone"].startswith("derived from dns.hostnames")


def test_explicit_values_are_never_overridden(tmp_path):
    path = write(tmp_path, '[profiles.p.dns]\nhostnames = ["a.example.org"]\nzone = "example.org"\n'
                           '[profiles.p.cloudflare]\nzone = "other.org"\n')
    prof = load_profile("p", str(path), env={})
    assert prof.value("dns.zone") == "example.org" and prof.value("cloudflare.zone") == "other.org"
    assert prof.derived == {}
