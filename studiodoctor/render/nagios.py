"""Nagios/Icinga plugin output: one status line, perfdata, long text (the plugin guidelines).

``STUDIODOCTOR CRITICAL - 2 fail: redis.reachable, postgres.reachable | 'redis.latency median_ms'=0.4ms;100;1000;0;``
then one line per result that is not ok. The exit code (0/1/2/3) is the report's, already Nagios's.
Perfdata carries every metric a check declared with a threshold (see ``studiodoctor.metrics``).
"""

from __future__ import annotations

STATE = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
# which results name the state on the status line, worst first
NAMED = {2: ("fail",), 3: ("error", "blocked"), 1: ("warn",)}
LISTED = 5


def number(value) -> str:
    """A perfdata number: plain decimal, never an exponent (parsers read [-0-9.] only)."""
    if value is None:
        return ""
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _threshold(value, below: bool) -> str:
    if value is None:
        return ""
    return f"{number(value)}:" if below else number(value)


def label(check: str, name: str) -> str:
    text = f"{check} {name}".replace("=", "_").replace("'", "''")
    return f"'{text}'"


def perfdata(results: list[dict]) -> list[str]:
    out = []
    for r in results:
        for m in r.get("metrics", []):
            if m["warn"] is None and m["crit"] is None:
                continue
            fields = [f"{number(m['value'])}{m['uom']}", _threshold(m["warn"], m["below"]),
                      _threshold(m["crit"], m["below"]), number(m["min"]), number(m["max"])]
            out.append(f"{label(r['id'], m['name'])}={';'.join(fields).rstrip(';')}")
    return out


def _clean(text: str) -> str:
    return " ".join(str(text).replace("|", "/").split())


def status_line(data: dict) -> str:
    code = data["exit_code"]
    # smoke --state: results hysteresis holds back (`pending`) neither name the state nor count
    results = [r for r in data["results"] if r.get("transition") != "pending"]
    counts: dict[str, int] = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    parts = []
    for status in NAMED.get(code, ()):
        ids = [r["id"] for r in results if r["status"] == status]
        if ids:
            more = f", +{len(ids) - LISTED} more" if len(ids) > LISTED else ""
            parts.append(f"{len(ids)} {status}: {', '.join(ids[:LISTED])}{more}")
    if code == 0 or not parts:
        parts.append(", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                     or ("nothing alerting" if data["results"] else "no checks ran"))
    smoke = data.get("smoke") or {}
    for key, word in (("recovered", "recovered"), ("pending", "bad but not yet alerting")):
        if smoke.get(key):
            parts.append(f"{len(smoke[key])} {word}: {', '.join(smoke[key][:LISTED])}")
    what = data["command"] + (f" {data['symptom']}" if data.get("symptom") else "")
    return (f"STUDIODOCTOR {STATE.get(code, 'UNKNOWN')} - {'; '.join(parts)} "
            f"({what}, profile {data['profile']}, {data['duration_ms'] / 1000:.1f} s)")


def render_nagios(data: dict, **_) -> str:
    line = _clean(status_line(data))
    perf = perfdata(data["results"])
    lines = [f"{line} | {' '.join(perf)}" if perf else line]
    for cause in data.get("likely_causes") or ([data["likely_cause"]] if data.get("likely_cause") else []):
        lines.append(_clean(f"likely cause: {cause['layer']} ({cause['check']}): {cause['summary']}"))
    unrelated = {u["check"] for u in data.get("unrelated_failures") or []}
    for r in data["results"]:
        if r["status"] not in ("ok", "skip"):
            hint = f" - fix: {r['hint']}" if r.get("hint") else ""
            held = " (pending)" if r.get("transition") == "pending" else ""
            aside = " (also failing, not the cause of this symptom)" if r["id"] in unrelated else ""
            lines.append(_clean(f"[{r['status'].upper()}{held}] {r['id']}{aside}: {r['summary']}{hint}"))
    return "\n".join(lines) + "\n"
