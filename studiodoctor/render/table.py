"""The terminal output: a list of checks, or a numbered runbook read top to bottom at 3 a.m."""

from __future__ import annotations

import io

from . import format_value, is_rows, rows_table

STYLE = {"ok": "green", "skip": "dim", "warn": "yellow", "blocked": "magenta", "error": "magenta",
         "fail": "bold red", "inconclusive": "magenta", "manual": "cyan", "skipped": "dim"}
MARK = {"ok": "OK", "skip": "SKIP", "warn": "WARN", "blocked": "BLOCKED", "error": "ERROR", "fail": "FAIL",
        "inconclusive": "UNSURE", "manual": "MANUAL", "skipped": "SKIP"}


def _console(color: bool, width: int):
    from rich.console import Console

    buf = io.StringIO()
    return buf, Console(file=buf, force_terminal=color, no_color=not color, width=width, highlight=False,
                        soft_wrap=True, emoji=False)


def _badge(status: str) -> str:
    return f"[{STYLE.get(status, '')}]{MARK.get(status, status.upper()):<7}[/]"


def _result_lines(con, r: dict, indent: str, details: bool) -> None:
    from rich.markup import escape

    con.print(f"{indent}{_badge(r['status'])} {escape(r['id'])}  {escape(r['summary'])}")
    if not details or r["status"] in ("ok", "skip"):
        return
    for key, value in r["evidence"].items():
        if is_rows(value):
            con.print(f"{indent}        [dim]{escape(key)}:[/]")
            columns, cells = rows_table(value)
            widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
            con.print(f"{indent}          [dim]{escape('  '.join(c.ljust(w) for c, w in zip(columns, widths)))}[/]")
            for row in cells:
                con.print(f"{indent}          {escape('  '.join(v.ljust(w) for v, w in zip(row, widths)))}")
            continue
        text = value if key == "traceback" else format_value(value)
        con.print(f"{indent}        [dim]{escape(key)}:[/] {escape(str(text))}")
    if r.get("blocked_by"):
        con.print(f"{indent}        [dim]blocked by:[/] {escape(', '.join(r['blocked_by']))}")
    if r.get("hint"):
        con.print(f"{indent}        [bold]fix:[/] {escape(r['hint'])}")
    for c in r.get("commands", []):
        con.print(f"{indent}        [dim]\\[{c['safety']}][/] {escape(c['text'])}")


def render_table(data: dict, color: bool = False, width: int = 100) -> str:
    from rich.markup import escape

    buf, con = _console(color, width)
    results = {r["id"]: r for r in data["results"]}
    if data["command"] == "diagnose":
        con.print(f"[bold]studiodoctor diagnose {escape(str(data['symptom']))}[/]  profile {escape(data['profile'])}"
                  f"  ({data['duration_ms'] / 1000:.1f} s)")
        for note in data.get("notes", []):
            con.print(f"[cyan]{escape(note)}[/]")
        cause = data.get("likely_cause")
        if cause:
            con.print()
            con.print(f"[bold red]Likely cause:[/] [bold]{escape(cause['layer'])}[/] "
                      f"({escape(cause['check'])}): {escape(cause['summary'])}")
            for key, value in (cause.get("evidence") or {}).items():
                if key != "traceback":
                    con.print(f"    [dim]{escape(key)}:[/] {escape(format_value(value))}")
            if cause.get("hint"):
                con.print(f"    [bold]fix:[/] {escape(cause['hint'])}")
        con.print()
        for step in data["runbook"]:
            con.print(f"[bold]{step['step']}.[/] {_badge(step['verdict'])} [bold]{escape(step['layer'])}[/]: "
                      f"{escape(step['title'])}")
            con.print(f"      [dim]why:[/] {escape(step['why'])}")
            if step.get("consequence_of"):
                con.print(f"      [magenta]consequence of {escape(', '.join(step['consequence_of']))}[/]")
            for rid in step["results"]:
                _result_lines(con, results[rid], "      ", details=True)
            if step["verdict"] != "ok":
                for c in step["commands"]:
                    note = f"  [dim]# {escape(c['note'])}[/]" if c.get("note") else ""
                    con.print(f"      [dim]\\[{c['safety']}][/] {escape(c['text'])}{note}")
            con.print()
    else:
        counts: dict[str, int] = {}
        for r in data["results"]:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
            _result_lines(con, r, "", details=True)
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no checks"
        con.print()
        verdict = {0: "OK", 1: "WARN", 2: "FAIL", 3: "UNKNOWN"}.get(data["exit_code"], data["status"].upper())
        con.print(f"[bold]{verdict}[/]: {summary}  (profile {escape(data['profile'])},"
                  f" {data['duration_ms'] / 1000:.1f} s, exit {data['exit_code']})")
    return buf.getvalue()
