"""JUnit XML for CI pipelines: one testsuite per layer, one testcase per check.

fail -> <failure>, error/blocked -> <error>, skip -> <skipped>; the body has the summary, the evidence,
the hint and the commands. Built with the stdlib (xml.etree); tests read it back with junitparser.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from . import format_value

# characters XML 1.0 cannot carry at all (control characters): replaced so the file always parses
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _x(text) -> str:
    return _NOT_XML.sub("\ufffd", str(text))


KIND = {"fail": "failure", "warn": None, "error": "error", "blocked": "error", "skip": "skipped"}


def _body(r: dict) -> str:
    lines = [r["summary"]]
    for key, value in r.get("evidence", {}).items():
        lines.append(f"{key}: {value if key == 'traceback' else format_value(value)}")
    if r.get("blocked_by"):
        lines.append(f"blocked by: {', '.join(r['blocked_by'])}")
    if r.get("hint"):
        lines.append(f"fix: {r['hint']}")
    for c in r.get("commands", []):
        lines.append(f"[{c['safety']}] {c['text']}")
    return _x("\n".join(lines))


def _secs(ms) -> str:
    return f"{(ms or 0) / 1000:.3f}"


def render_junit(data: dict, **_) -> str:
    what = data["command"] + (f" {data['symptom']}" if data.get("symptom") else "")
    root = ET.Element("testsuites", name=_x(f"studiodoctor {what} (profile {data['profile']})"),
                      time=_secs(data["duration_ms"]))
    layers: dict[str, list[dict]] = {}
    for r in data["results"]:
        layers.setdefault(r["layer"], []).append(r)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for layer, results in layers.items():
        suite = ET.SubElement(root, "testsuite", name=layer, timestamp=data["started_at"],
                              time=_secs(sum(r.get("duration_ms", 0) for r in results)))
        counts = {"tests": len(results), "failures": 0, "errors": 0, "skipped": 0}
        for r in results:
            case = ET.SubElement(suite, "testcase", name=r["id"], classname=f"studiodoctor.{layer}",
                                 time=_secs(r.get("duration_ms")))
            kind = KIND.get(r["status"])
            if kind:
                el = ET.SubElement(case, kind, message=_x(r["summary"][:500]), type=r["status"])
                el.text = _body(r)
                counts[{"failure": "failures", "error": "errors", "skipped": "skipped"}[kind]] += 1
            else:  # ok and warn pass; warn says so in its output
                out = ET.SubElement(case, "system-out")
                out.text = (f"WARN: " if r["status"] == "warn" else "") + _body(r)
        for key, n in counts.items():
            suite.set(key, str(n))
            totals[key] += n
    for key, n in totals.items():
        root.set(key, str(n))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
