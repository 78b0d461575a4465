"""The Sentry, New Relic and Postmark tokens never appear in any output format, --debug included, on the
healthy path (Postmark's /server answers the token itself in ApiTokens), on auth failures, and when a
vendor echoes the token in its error message."""

from __future__ import annotations

import pytest

from studiodoctor.cli import main
from studiodoctor.lab.standins.newrelic_api import NewRelicAPI
from studiodoctor.lab.standins.postmark_api import PostmarkAPI
from studiodoctor.lab.standins.sentry_api import SentryAPI
from studiodoctor.render import FORMATS

TOKENS = {"SD_SENTRY": "sntrys_SECRETsentry0123456789abcdef", "SD_NR": "NRAK-SECRETNR0123456789ABCDEF",
          "SD_PM": "pm-SECRET-0123-4567-89ab-cdef"}


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    root = tmp_path_factory.mktemp("saas-secrets")
    servers = [SentryAPI(root, token=TOKENS["SD_SENTRY"]).start(), NewRelicAPI(root, api_key=TOKENS["SD_NR"]).start(),
               PostmarkAPI(root, token=TOKENS["SD_PM"]).start()]
    yield servers
    for s in servers:
        s.stop()


def _config(tmp_path, sentry, nr, pm, *, sentry_url=None, nr_url=None, pm_url=None) -> str:
    path = tmp_path / "sd.toml"
    path.write_text(f"""default_profile = "t"
[profiles.t]
timeout = 5
[profiles.t.sentry]
api_url = "{sentry_url or sentry.profile()['sentry']['api_url']}"
auth_token = "${{SD_SENTRY}}"
organization = "learningequality"
project = "studio"
[profiles.t.newrelic]
api_url = "{nr_url or nr.profile()['newrelic']['api_url']}"
api_key = "${{SD_NR}}"
account_id = "{nr.account_id}"
app_name = "{nr.app_name}"
[profiles.t.email]
postmark_api_url = "{pm_url or pm.url}"
server_token = "${{SD_PM}}"
status_url = "{pm.profile()['email']['status_url']}"
""")
    return str(path)


def _all_outputs(capsys, config: str) -> str:
    seen = []
    for fmt in FORMATS:
        for extra in ([], ["--debug"]):
            main(["check", "--config", config, "--layer", "sentry", "--layer", "newrelic", "--layer", "email",
                  "--format", fmt, *extra])
            out, err = capsys.readouterr()
            seen.append(out + err)
    return "\n".join(seen)


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STUDIODOCTOR_CONFIG", raising=False)
    for k, v in TOKENS.items():
        monkeypatch.setenv(k, v)
    return monkeypatch


def _assert_clean(text: str):
    for token in TOKENS.values():
        assert token not in text
        assert token[8:24] not in text  # no fragment either


def test_tokens_never_printed_healthy(stand_ins, env, tmp_path, capsys):
    sentry, nr, pm = stand_ins
    text = _all_outputs(capsys, _config(tmp_path, sentry, nr, pm))
    assert "server Studio (Live) accepted our token" in text  # the checks did run
    _assert_clean(text)
    main(["config", "show", "--config", _config(tmp_path, sentry, nr, pm)])
    out, err = capsys.readouterr()
    assert "auth_token" in out and "server_token" in out and "api_key" in out
    _assert_clean(out + err)


def test_tokens_never_printed_when_rejected(stand_ins, env, tmp_path, capsys):
    sentry, nr, pm = stand_ins
    for var in TOKENS:
        env.setenv(var, TOKENS[var] + "X")  # wrong tokens: 401 everywhere
    text = _all_outputs(capsys, _config(tmp_path, sentry, nr, pm))
    assert "401" in text
    _assert_clean(text)  # the configured (wrong) tokens start with the originals


def test_tokens_never_printed_when_echoed_by_the_vendor(stand_ins, env, tmp_path, capsys):
    from pytest_httpserver import HTTPServer

    sentry, nr, pm = stand_ins
    with HTTPServer(host="127.0.0.1") as srv:
        srv.expect_request("/api/0/projects/learningequality/studio/").respond_with_json(
            {"detail": f"token {TOKENS['SD_SENTRY']} is not valid for this organization"}, status=400)
        srv.expect_request("/graphql", method="POST").respond_with_json(
            {"errors": [{"message": f"API-Key: {TOKENS['SD_NR']} has no access"}]})
        srv.expect_request("/server").respond_with_json(
            {"ErrorCode": 10, "Message": f"Server token {TOKENS['SD_PM']} unknown"}, status=422)
        text = _all_outputs(capsys, _config(tmp_path, sentry, nr, pm, sentry_url=srv.url_for("/api/0"),
                                            nr_url=srv.url_for("/graphql"), pm_url=srv.url_for("")))
    assert "not valid for this organization" in text and "API-Key: ***" in text
    _assert_clean(text)
