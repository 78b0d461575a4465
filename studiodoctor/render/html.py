"""HTML output: one self-contained page to look at, link or attach to an incident document.

The likely cause(s) on top, then the stack as a picture (``html_stack``): each part of Studio's
architecture a box colored by its layers' worst status, with the status's symbol and word too, the trace's
hops along the request path, each box opening to its checks. Inline CSS and SVG only; a Content-Security-
Policy forbids every fetch, so the page works offline and asks nothing of anyone when opened. The only
script (copy buttons, allowed by its hash) is optional: without it the page loses nothing but the buttons.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape

from . import format_value, watch_line
from .html_stack import Picture, badge, commands_html, evidence_html
from .html_style import CSS, SCRIPT


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    return (f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; img-src data:; "
            "base-uri 'none'; form-action 'none'")


def _title(data: dict) -> str:
    if data["command"] == "diagnose":
        return f"studiodoctor diagnose {data.get('symptom')} — profile {data['profile']}"
    return f"studiodoctor {data['command']} — profile {data['profile']}"


def _causes(data: dict) -> str:
    causes = data.get("likely_causes") or ([data["likely_cause"]] if data.get("likely_cause") else [])
    out = []
    if causes:
        head = "Likely cause" if len(causes) == 1 else f"Likely causes ({len(causes)} independent roots)"
        out.append(f"<h2>{head}</h2>")
        for c in causes:
            bits = [f'<p class="what">◆ {escape(str(c.get("layer")))} — <code>{escape(str(c.get("check")))}</code>: '
                    f'{escape(str(c.get("summary", "")))}</p>']
            if c.get("evidence"):
                bits.append(evidence_html(c["evidence"]))
            if c.get("hint"):
                bits.append(f'<p class="hint"><b>Fix:</b> {escape(c["hint"])}</p>')
            if c.get("because"):
                bits.append(f'<p class="small">Why this warning: {escape(c["because"])}</p>')
            if c.get("explains"):
                bits.append('<p class="small">Explains ' + ", ".join(
                    f"<code>{escape(e['check'])}</code>" for e in c["explains"]) + ".</p>")
            out.append(f'<div class="cause" data-cause="{escape(str(c.get("check")))}">{"".join(bits)}</div>')
        return f'<section class="causes">{"".join(out)}</section>'
    bad = [r for r in data["results"] if r["status"] in ("fail", "error", "blocked", "warn")]
    rank = {"fail": 0, "error": 1, "blocked": 2, "warn": 3}
    bad.sort(key=lambda r: rank[r["status"]])
    if data["command"] == "diagnose":
        head = "No likely cause: nothing that can produce the symptom failed"
    else:
        head = "What is wrong" if bad else "Nothing is wrong"
    items = "".join(f'<li>{badge(r["status"])} <code>{escape(r["id"])}</code>: {escape(r["summary"])}</li>'
                    for r in bad[:8])
    more = f'<p class="small">and {len(bad) - 8} more below.</p>' if len(bad) > 8 else ""
    cls = "causes" if any(r["status"] == "fail" for r in bad) else "causes none"
    return f'<section class="{cls}"><h2>{escape(head)}</h2>{"<ul>" + items + "</ul>" if items else ""}{more}</section>'


def _unrelated(data: dict) -> str:
    found = data.get("unrelated_failures") or []
    if not found:
        return ""
    items = []
    for u in found:
        if isinstance(u, dict):
            items.append(f'<li>{badge(u["status"]) if u.get("status") else ""} '
                         f'<code>{escape(str(u.get("check") or u.get("id")))}</code>: '
                         f'{escape(str(u.get("summary", "")))}'
                         + (f' <span class="small">({escape(str(u["why"]))})</span>' if u.get("why") else "") + "</li>")
        else:
            items.append(f"<li><code>{escape(str(u))}</code></li>")
    return ("<section><h2>Also failing, not the cause of this symptom</h2>"
            f'<ul class="unrelated">{"".join(items)}</ul></section>')


def timeline_events(data: dict) -> list[dict]:
    return ((data.get("watch") or {}).get("events")) or []


def _timeline(data: dict) -> str:
    watch = data.get("watch")
    if not watch:
        return ""
    items = "".join(
        f'<li data-check="{escape(e["check"])}"><code>{escape(e["at"])}</code> (+{e["elapsed_s"]:.0f} s) '
        f'<code>{escape(e["check"])}</code>: {badge(e["before"]) if e.get("before") else "new"} → '
        f'{badge(e["now"])} {escape(e.get("summary", ""))}</li>' for e in timeline_events(data))
    return (f'<section><h2>Incident timeline</h2><p class="small">{escape(watch_line(watch))}</p>'
            f'<ol class="timeline">{items}</ol></section>')


def _since_good(data: dict) -> str:
    since = data.get("since_good")
    if since is None:
        return ""
    items = "".join(f"<li><code>{escape(c['check'])}</code> <code>{escape(c['key'])}</code>: "
                    f"{escape(format_value(c['before']))} → {escape(format_value(c['now']))}</li>"
                    for c in since["changes"])
    return (f'<section><h2>Since the last good run</h2><p>{escape(since["note"])}</p>'
            + (f'<details><summary>all {len(since["changes"])} changes</summary><ul class="changes">{items}</ul>'
               "</details>" if items else "") + "</section>")


def _runbook(data: dict) -> str:
    if data["command"] != "diagnose" or not data.get("runbook"):
        return ""
    steps = []
    for step in data["runbook"]:
        bits = [f'{badge(step["verdict"])} <b>{escape(step["layer"])}</b>: {escape(step["title"])}',
                f'<p class="small">Why: {escape(step["why"])}</p>']
        if step.get("consequence_of"):
            bits.append(f'<p class="small">Consequence of {escape(", ".join(step["consequence_of"]))}.</p>')
        if step["verdict"] not in ("ok",) and not step.get("consequence_of"):
            bits.append(commands_html(step.get("commands") or []))
        steps.append(f'<li data-step="{step["step"]}">{"".join(bits)}</li>')
    return f'<section><h2>Runbook</h2><ol class="runbook">{"".join(steps)}</ol></section>'


def page(data: dict, *, refresh: float | None = None, note: str = "") -> str:
    """The whole page; ``refresh`` (seconds) makes it reload itself (``serve``'s ``/``)."""
    meta_refresh = f'<meta http-equiv="refresh" content="{max(1, round(refresh))}">' if refresh else ""
    extra = f'<p class="meta">{escape(note)}</p>' if note else ""
    notes = "".join(f'<p class="meta">{escape(n)}</p>' for n in data.get("notes", []))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{_csp()}">'
        f'<meta name="referrer" content="no-referrer">{meta_refresh}'
        f"<title>{escape(_title(data))}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{escape(_title(data))}</h1>"
        f'<p class="meta">Overall: <span class="overall" data-overall="{escape(data["status"])}">'
        f'{badge(data["status"])}</span> exit {data["exit_code"]} · started {escape(data["started_at"])} · took '
        f'{data["duration_ms"] / 1000:.1f} s · {len(data["results"])} checks</p>{extra}{notes}</header>'
        f"{_causes(data)}{_unrelated(data)}{_timeline(data)}{_since_good(data)}"
        f'<h2>The stack</h2><p class="small">Each box is a part of Studio\'s production architecture, marked by '
        "the worst status of its checks; open one for what each check saw. The arrows are one request "
        f"followed hop by hop (trace.hops).</p>{Picture(data).render()}{_runbook(data)}"
        f'<footer class="small"><p>{escape(data["tool"]["name"])} {escape(data["tool"]["version"])} · '
        f'{escape(data["schema"])} · this page is self-contained: it loads nothing.</p></footer>'
        f"<script>{SCRIPT}</script></body></html>\n")


def waiting_page(refresh: float, note: str) -> str:
    """What ``serve``'s ``/`` shows before its first run has finished."""
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta http-equiv="Content-Security-Policy" content="{_csp()}">'
            f'<meta http-equiv="refresh" content="{max(1, round(refresh))}"><title>studiodoctor: waiting</title>'
            f"<style>{CSS}</style></head><body><h1>studiodoctor serve</h1><p>{escape(note)}</p></body></html>\n")


def render_html(data: dict, **_) -> str:
    return page(data)
