"""`--format html`: one self-contained page drawing the stack, read back with the standard library's HTML
parser (the browser tests in tests/browser/ look at the same page in Chromium, against the lab)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from studiodoctor import engine
from studiodoctor.cli import main
from studiodoctor.model import error, fail, ok, skip, warn
from studiodoctor.registry import Registry
from studiodoctor.render import render
from studiodoctor.render.html_style import SYMBOL, WORD
from studiodoctor.secrets import Redactor

ROWS = [{"hop": "edge", "layer": "cloudflare", "path": "/stealthz", "status": 502, "verdict": "bad", "why": "HTTP 502"},
        {"hop": "origin", "layer": "traefik", "path": "/stealthz", "status": 502, "verdict": "bad", "why": "HTTP 502"},
        {"hop": "nginx", "layer": "nginx", "path": "/stealthz", "status": 502, "verdict": "bad", "why": "HTTP 502"},
        {"hop": "app", "layer": "app", "path": "/stealthz", "status": None, "verdict": "bad",
         "why": "connection refused"}]


def stack_registry() -> Registry:
    reg = Registry()
    reg.check("redis.up", title="Redis answers")(lambda ctx: ok("PONG in 1 ms", evidence={"latency_ms": 1.2}))
    reg.check("app.stealthz", title="The app answers")(
        lambda ctx: fail("connection refused <script>alert(1)</script>", evidence={"address": "127.0.0.1:1"},
                         hint="start gunicorn & look at its logs"))
    reg.check("nginx.app_proxy", title="nginx reaches the app")(lambda ctx: fail("502 from nginx"))
    reg.check("gcs.listing", title="Bucket not listable")(lambda ctx: warn("listing is open"))
    reg.check("postgres.up", title="DB")(lambda ctx: error("permission denied for our role"))
    reg.check("email.smtp", title="SMTP")(lambda ctx: skip("not configured"))
    reg.check("trace.hops", title="Request path")(lambda ctx: fail(
        "first bad hop: app", evidence={"rows": ROWS, "first_bad_hop": "app", "bad_at": {"/stealthz": "app"}}))
    reg.check("thirdparty.thing", title="A plugin's layer")(lambda ctx: ok("fine"))
    return reg


class Page(HTMLParser):
    """Every element's tag and attributes, and the text of the page."""

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def find(self, **attrs) -> list[dict]:
        return [a for _, a in self.elements if all(a.get(k) == v for k, v in attrs.items())]


@pytest.fixture
def data(make_profile):
    report = engine.check(make_profile(name="demo"), registry=stack_registry())
    return report.to_dict(Redactor())


def test_boxes_carry_their_layers_worst_status_in_words_and_symbols(data):
    text = render(data, "html")
    page = Page(text)
    status = {a["data-box"]: a["data-status"] for a in page.find() if "data-box" in a}
    assert status["app"] == "fail" and status["nginx"] == "fail" and status["redis"] == "ok"
    assert status["gcs"] == "warn" and status["postgres"] == "error" and status["email"] == "skip"
    assert status["celery"] == "none"             # no check of it ran: said so, never ok
    assert status["other"] == "ok"                # a plugin's layer is not lost
    for word in ("fail", "warn", "error", "ok", "skip", "none"):  # never color alone
        assert f"{SYMBOL[word]} {WORD[word]}" in text
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_the_trace_is_drawn_along_the_path_with_the_first_bad_hop(data):
    page = Page(render(data, "html"))
    hops = {a["data-hop"]: a for a in page.find() if "data-hop" in a}
    assert list(hops) == ["edge", "origin", "nginx", "app"]
    assert {h: a["data-verdict"] for h, a in hops.items()} == dict.fromkeys(hops, "bad")
    assert [h for h, a in hops.items() if a["data-first-bad"] == "true"] == ["app"]


def test_the_page_fetches_nothing_and_allows_only_its_own_script(data):
    text = render(data, "html")
    page = Page(text)
    assert not [a for tag, a in page.elements if tag in ("link", "img", "iframe", "object", "embed")]
    assert not [a for _, a in page.elements if any(k in a for k in ("src", "href")) and
                not str(a.get("href", "#")).startswith("#")]
    csp = page.find(**{"http-equiv": "Content-Security-Policy"})[0]["content"]
    assert "default-src 'none'" in csp and re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'", csp)
    assert len([t for t, _ in page.elements if t == "script"]) == 1
    assert all(a.get("hidden") is not None for a in page.find(**{"class": "copy"}))  # shown by the script only


def test_likely_causes_unrelated_failures_vantage_and_samples_when_present(data):
    results = {r["id"]: r for r in data["results"]}
    results["postgres.up"]["vantage"] = "cluster"
    results["redis.up"]["samples"] = {"sent": 20, "failed": 0, "p50_ms": 1.1, "p95_ms": 3.5}
    data["likely_causes"] = [{"layer": "app", "check": "app.stealthz", "summary": "the app is down"},
                             {"layer": "redis", "check": "redis.up", "summary": "redis too"}]
    data["likely_cause"] = data["likely_causes"][0]
    data["unrelated_failures"] = [{"check": "gcs.listing", "layer": "gcs", "status": "warn",
                                   "summary": "listing is open"}]
    text = render(data, "html")
    page = Page(text)
    assert [a["data-cause"] for a in page.find() if "data-cause" in a] == ["app.stealthz", "redis.up"]
    assert "Likely causes (2 independent roots)" in text and "Also failing, not the cause of this symptom" in text
    assert text.count("◆ likely cause") == 2
    assert "seen from the cluster (the in-cluster doctor)" in text and "seen from this machine" in text
    assert "samples: sent 20, failed 0, p50_ms 1.1, p95_ms 3.5" in text


def test_changes_since_the_good_run_open_in_their_box(data):
    data["since_good"] = {"baseline": "b.json", "saved_at": "2026-01-01T00:00:00+00:00", "note": "1 change(s)",
                          "changes": [{"layer": "redis", "check": "redis.up", "key": "version", "before": "7.0",
                                       "now": "7.2"}]}
    page = Page(render(data, "html"))
    check = page.find(**{"data-check": "redis.up", "class": "check st-ok"})[0]
    assert "open" in check                        # an ok check with a change shows it without a click
    assert "version" in "".join(page.text) and "Since the last good run" in "".join(page.text)


def test_serve_page_refreshes_itself(data):
    from studiodoctor.render.html import page

    text = page(data, refresh=60)
    assert Page(text).find(**{"http-equiv": "refresh", "content": "60"})
    assert not Page(render(data, "html")).find(**{"http-equiv": "refresh"})


def test_cli_writes_the_page_for_check_and_diagnose(tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[profiles.p.redis]\nurl = "redis://127.0.0.1:1/0"\n')
    assert main(["check", "--layer", "redis", "--config", str(cfg), "--profile", "p", "--format", "html",
                 "--timeout", "2"]) == 2
    out = capsys.readouterr().out
    assert out.startswith("<!DOCTYPE html>") and 'data-box="redis" data-status="fail"' in out
    assert main(["diagnose", "publishing", "--config", str(cfg), "--profile", "p", "--format", "html",
                 "--timeout", "2"]) == 2
    out = capsys.readouterr().out
    assert 'data-cause="redis.' in out and "<h2>Runbook</h2>" in out


def test_the_ingress_box_is_named_after_the_controller_found(data):
    data["results"].append({"id": "kubernetes.ingress_controller", "layer": "kubernetes", "title": "t", "status": "ok",
                            "summary": "ingress-nginx routes studio", "evidence": {"controllers": ["ingress-nginx"]},
                            "hint": "", "commands": [], "duration_ms": 1, "blocked_by": []})
    assert '<span class="name">Ingress: ingress-nginx</span>' in render(data, "html")
    data["results"][-1]["evidence"]["controllers"] = ["Traefik"]
    assert '<span class="name">Traefik</span>' in render(data, "html")
