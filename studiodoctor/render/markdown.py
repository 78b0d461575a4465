"""Markdown output, to paste into an incident document."""

from __future__ import annotations

from . import format_value, is_rows, seen_from, rows_table, since_good_lines, timeline_lines

ICON = {"ok": "✅", "skip": "⏭️", "warn": "⚠️", "blocked": "⛔", "error": "❓", "fail": "❌",
        "inconclusive": "❓", "manual": "📝", "skipped": "⏭️"}


def _evidence(lines: list[str], evidence: dict, indent: str = "") -> None:
    for key, value in evidence.items():
        if is_rows(value):
            columns, cells = rows_table(value)
            lines.append(f"{indent}- {key}:")
            lines.append("")
            lines.append(f"{indent}  | {' | '.join(columns)} |")
            lines.append(f"{indent}  |{'---|' * len(columns)}")
            for row in cells:
                escaped = [c.replace("|", "\\|") for c in row]
                lines.append(f"{indent}  | {' | '.join(escaped)} |")
            lines.append("")
        elif key == "traceback":
            lines.append(f"{indent}- traceback:\n\n```\n{value}\n```")
        else:
            lines.append(f"{indent}- {key}: `{format_value(value)}`")


def _commands(lines: list[str], commands: list[dict]) -> None:
    if not commands:
        return
    lines.append("")
    lines.append("```sh")
    for c in commands:
        note = f"  # {c['note']}" if c.get("note") else ""
        lines.append(f"# [{c['safety']}]{note}")
        lines.append(c["text"])
    lines.append("```")


def render_markdown(data: dict, **_) -> str:
    results = {r["id"]: r for r in data["results"]}
    lines = []
    if data["command"] == "diagnose":
        lines.append(f"# studiodoctor diagnose `{data['symptom']}` — profile `{data['profile']}`")
    else:
        lines.append(f"# studiodoctor {data['command']} — profile `{data['profile']}`")
    lines.append("")
    lines.append(f"Started {data['started_at']}, took {data['duration_ms'] / 1000:.1f} s. "
                 f"Overall: **{data['status']}** (exit {data['exit_code']}).")
    for note in data.get("notes", []):
        lines.append("")
        lines.append(f"> {note}")
    cause = data.get("likely_cause")
    if cause:
        lines += ["", "## Likely cause", "",
                  f"**{cause['layer']}** — `{cause['check']}`: {cause['summary']}"]
        if cause.get("evidence"):
            lines.append("")
            _evidence(lines, cause["evidence"])
        if cause.get("hint"):
            lines += ["", f"Fix: {cause['hint']}"]
        if cause.get("because"):
            lines += ["", f"Why this warning: {cause['because']}"]
        if cause.get("explains"):
            lines += ["", "Explains " + ", ".join(f"`{e['check']}`" for e in cause["explains"]) + "."]
        for other in (data.get("likely_causes") or [])[1:]:   # independent roots after the first
            lines += ["", f"Also a likely cause: **{other['layer']}** — `{other['check']}`: {other['summary']}"]
            if other.get("hint"):
                lines.append(f"Fix: {other['hint']}")
    if data.get("unrelated_failures"):
        lines += ["", "## Also failing, not the cause of this symptom", ""]
        lines += [f"- {ICON.get(u['status'], '')} `{u['check']}` **{u['status']}** — {u['summary']}"
                  for u in data["unrelated_failures"]]
    timeline = timeline_lines(data)
    if timeline:
        lines += ["", "## Incident timeline", "", timeline[0], ""]
        lines += [f"{i}. {line}" for i, line in enumerate(timeline[1:], 1)] or ["(no status changed)"]
    since = since_good_lines(data)
    if since:
        lines += ["", "## Since the last good run", "", since[0], ""] + [f"- `{line}`" for line in since[1:]]
    if data["command"] == "diagnose":
        lines += ["", "## Runbook"]
        for step in data["runbook"]:
            lines += ["", f"### {step['step']}. {ICON.get(step['verdict'], '')} {step['layer']}: {step['title']} "
                          f"— {step['verdict']}", "", f"_Why:_ {step['why']}"]
            if step.get("consequence_of"):
                lines.append(f"_Consequence of {', '.join(step['consequence_of'])}._")
            for e in [e for e in step.get("explained_by") or [] if e.get("rule")]:   # causal rules' links
                lines.append(f"_`{e['check']}` explained by `{e['cause']}`: {e['because']}._")
            if step.get("unrelated"):
                lines.append(f"_Also failing, not the cause of this symptom: {', '.join(step['unrelated'])}._")
            if step.get("blocked_by"):
                lines.append(f"_Blocked by {', '.join(step['blocked_by'])}._")
            if step["results"]:
                lines.append("")
                for rid in step["results"]:
                    r = results[rid]
                    lines.append(f"- {ICON[r['status']]} `{r['id']}`{seen_from(r)} **{r['status']}** — {r['summary']}")
                    if r["status"] not in ("ok", "skip"):
                        _evidence(lines, r["evidence"], "  ")
                        if r.get("hint"):
                            lines.append(f"  - fix: {r['hint']}")
            _commands(lines, step["commands"])
    else:
        lines += ["", "| status | check | summary |", "|---|---|---|"]
        for r in data["results"]:
            summary = r["summary"].replace("|", "\\|")
            lines.append(f"| {ICON[r['status']]} {r['status']} | `{r['id']}`{seen_from(r)} | {summary} |")
        for r in data["results"]:
            if r["status"] in ("ok", "skip"):
                continue
            lines += ["", f"### `{r['id']}`{seen_from(r)} — {r['status']}", "", r["summary"], ""]
            _evidence(lines, r["evidence"])
            if r.get("hint"):
                lines += ["", f"Fix: {r['hint']}"]
            _commands(lines, r["commands"])
    return "\n".join(lines) + "\n"
