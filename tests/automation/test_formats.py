"""nagios, prometheus and junit outputs, each read back with its consumer's parser (or the spec's grammar)."""

from __future__ import annotations

import re
import time

import pytest

from studiodoctor import engine
from studiodoctor.model import error, fail, ok, skip, warn
from studiodoctor.registry import Registry, RegistryError
from studiodoctor.render import FORMATS, render
from studiodoctor.secrets import Redactor


def demo_registry() -> Registry:
    reg = Registry()
    reg.check("web.up", title="Web answers", metrics=("latency_ms;warn_ms;fail_ms;0",))(
        lambda ctx: warn("slow: 250 ms", evidence={"latency_ms": 250.5, "warn_ms": 200, "fail_ms": 1000},
                         hint="look at the load"))
    reg.check("web.cert", title="Certificate", metrics=("certs.*.days_left;14:;3:;0",))(
        lambda ctx: ok("2 certs", evidence={"certs": {"a.example": {"days_left": 40}, "b'x=y": {"days_left": 2.5}}}))
    reg.check("db.up", title="DB answers")(lambda ctx: fail("refused", evidence={"address": "127.0.0.1:1"},
                                                            hint="start it"))
    reg.check("db.latency", title="DB latency", depends_on=["db.up"])(lambda ctx: ok("never runs"))
    reg.check("db.size", title="DB size", metrics=("size_bytes",))(
        lambda ctx: error("cannot look: \x07bell", evidence={"size_bytes": "n/a"}))
    reg.check("mail.up", title="Mail", needs=("email.smtp_host",))(lambda ctx: ok("never"))
    reg.check("db.count", title="DB rows", metrics=("rows;;;0",))(lambda ctx: skip("not applicable"))
    return reg


@pytest.fixture
def data(make_profile):
    prof = make_profile({"email": {"smtp_host": ""}}, name="demo")
    report = engine.check(prof, registry=demo_registry())
    return report.to_dict(Redactor())


def test_every_format_is_one_module_and_renders(data):
    assert {"nagios", "prometheus", "junit"} <= set(FORMATS)
    for fmt in FORMATS:
        assert render(data, fmt).strip()


def test_metrics_are_resolved_from_the_declared_evidence_keys(data):
    res = {r["id"]: r for r in data["results"]}
    latency = res["web.up"]["metrics"]
    assert latency == [{"name": "latency_ms", "value": 250.5, "uom": "ms", "warn": 200.0, "crit": 1000.0,
                        "min": 0.0, "max": None, "below": False}]
    certs = {m["name"]: m for m in res["web.cert"]["metrics"]}
    assert set(certs) == {"certs.a.example.days_left", "certs.b'x=y.days_left"}
    assert certs["certs.a.example.days_left"]["warn"] == 14 and certs["certs.a.example.days_left"]["below"]
    assert res["db.size"]["metrics"] == []  # "n/a" is not a number: left out, not 0


def test_bad_metric_declarations_are_caught_at_registration():
    reg = Registry()
    with pytest.raises(RegistryError, match="not one string"):
        reg.check("x.one", title="x", metrics="latency_ms;1;2")(lambda ctx: ok(""))
    with pytest.raises(RegistryError, match="key\\[;warn"):
        reg.check("x.two", title="x", metrics=("a;1;2;3;4;5",))(lambda ctx: ok(""))
    with pytest.raises(RegistryError, match="read-only"):
        reg.check("x.three", title="x", smoke=True, safety="mutating")(lambda ctx: ok(""))


# -- nagios: the plugin guidelines' grammar ------------------------------------------------------------

PERF = re.compile(r"""('(?:[^']|'')+'|[^'= ]+)=(-?[0-9.]+)([a-zA-Z%]*)((?:;[-0-9.:~@]*){0,4})""")


def parse_perfdata(text: str) -> dict[str, tuple]:
    out, pos = {}, 0
    text = text.strip()
    while pos < len(text):
        m = PERF.match(text, pos)
        assert m, f"perfdata does not follow 'label'=value[UOM];warn;crit;min;max at: {text[pos:]!r}"
        label = m.group(1)
        if label.startswith("'"):
            label = label[1:-1].replace("''", "'")
        out[label] = (float(m.group(2)), m.group(3), *(m.group(4).split(";")[1:] + [""] * 4)[:4])
        pos = m.end()
        while pos < len(text) and text[pos] == " ":
            pos += 1
    return out


def test_nagios_status_line_perfdata_and_long_text(data):
    text = render(data, "nagios")
    first, *rest = text.rstrip("\n").split("\n")
    status, _, perf = first.partition(" | ")
    assert data["exit_code"] == 2
    assert status.startswith("STUDIODOCTOR CRITICAL - 1 fail: db.up")
    assert "|" not in status
    perfs = parse_perfdata(perf)
    assert perfs["web.up latency_ms"] == (250.5, "ms", "200", "1000", "0", "")
    assert perfs["web.cert certs.b'x=y.days_left".replace("=", "_")][2:4] == ("14:", "3:")
    assert not any(k.startswith("db.count") for k in perfs)  # no threshold: no perfdata
    assert "[FAIL] db.up: refused - fix: start it" in rest
    assert any(line.startswith("[BLOCKED] db.latency") for line in rest)
    assert any(line.startswith("[ERROR] db.size") for line in rest)


@pytest.mark.parametrize("code,word", [(0, "OK"), (1, "WARNING"), (3, "UNKNOWN")])
def test_nagios_state_word_follows_the_exit_code(make_profile, code, word):
    results = {0: ok("fine"), 1: warn("meh"), 3: error("cannot tell")}
    reg = Registry()
    reg.check("one.only", title="one")(lambda ctx: results[code])
    data = engine.check(make_profile(), registry=reg).to_dict(Redactor())
    assert data["exit_code"] == code
    assert render(data, "nagios").startswith(f"STUDIODOCTOR {word} - ")


# -- prometheus: prometheus_client's own parser --------------------------------------------------------

def samples(text: str) -> dict[str, list]:
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_prometheus_text_parses_with_the_client_parser(data):
    fams = samples(render(data, "prometheus"))
    status = {s.labels["check"]: s.value for s in fams["studiodoctor_check_status"]}
    assert status == {"web.up": 2, "web.cert": 0, "db.up": 5, "db.latency": 3, "db.size": 4, "mail.up": 1,
                      "db.count": 1}
    assert all(s.labels["profile"] == "demo" and s.labels["layer"] == s.labels["check"].split(".")[0]
               for s in fams["studiodoctor_check_status"])
    values = {(s.labels["check"], s.labels["metric"]): s.value for s in fams["studiodoctor_check_value"]}
    assert values[("web.up", "latency_ms")] == 250.5
    assert values[("web.cert", "certs.b'x=y.days_left")] == 2.5
    thresholds = {(s.labels["check"], s.labels["level"]): s.value for s in fams["studiodoctor_check_threshold"]}
    assert thresholds[("web.up", "warn")] == 200 and thresholds[("web.up", "crit")] == 1000
    (ts,) = fams["studiodoctor_run_timestamp_seconds"]
    assert abs(ts.value - time.time()) < 120
    assert {s.labels["check"] for s in fams["studiodoctor_check_duration_seconds"]} == set(status)


# -- junit: junitparser --------------------------------------------------------------------------------

def test_junit_one_suite_per_layer_one_case_per_check(data):
    from junitparser import Error, Failure, JUnitXml, Skipped

    xml = JUnitXml.fromstring(render(data, "junit").encode())
    suites = {s.name: s for s in xml}
    assert set(suites) == {"web", "db", "mail"}
    cases = {c.name: c for s in xml for c in s}
    assert set(cases) == {r["id"] for r in data["results"]}
    kinds = {name: [type(x) for x in c.result] for name, c in cases.items()}
    assert kinds["db.up"] == [Failure] and kinds["db.latency"] == [Error] and kinds["db.size"] == [Error]
    assert kinds["mail.up"] == [Skipped] and kinds["web.up"] == [] and kinds["web.cert"] == []
    failure = cases["db.up"].result[0]
    assert failure.message == "refused" and "address: 127.0.0.1:1" in failure.text and "fix: start it" in failure.text
    assert "blocked by: db.up" in cases["db.latency"].result[0].text
    assert suites["db"].tests == 4 and suites["db"].failures == 1 and suites["db"].errors == 2
    assert suites["db"].skipped == 1
    assert "\x07" not in render(data, "junit")  # a control character would make the file unreadable
