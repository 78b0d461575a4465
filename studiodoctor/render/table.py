"""The terminal output: a list of checks, or a numbered runbook read top to bottom at 3 a.m."""

from __future__ import annotations

import io

from . import format_value, is_rows, rows_table, seen_from, since_good_lines, timeline_lines

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


# columns that say which row is which: kept when a table has to lose columns to fit
KEY_COLUMNS = ("hop", "path", "pod", "name", "object", "host", "hostname", "check", "id", "status")


def _fit(columns: list[str], cells: list[list[str]], width: int) -> tuple[list[str], list[list[str]]]:
    """Drop columns (never the first two, nor KEY_COLUMNS) until the table fits the console: first the
    widest of those whose values differ on every row (URLs, request ids), then the widest."""
    columns, cells = list(columns), [list(row) for row in cells]

    def widths():
        return [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]

    while len(columns) > 3 and sum(widths()) + 2 * len(columns) > width:
        w = widths()
        droppable = [i for i in range(2, len(columns)) if columns[i] not in KEY_COLUMNS]
        if not droppable:
            break
        unique = [i for i in droppable if len({row[i] for row in cells}) == len(cells) and w[i] > 12]
        drop = max(unique or droppable, key=lambda i: w[i])
        del columns[drop]
        for row in cells:
            del row[drop]
    return columns, cells


def _result_lines(con, r: dict, indent: str, details: bool) -> None:
    from rich.markup import escape

    con.print(f"{indent}{_badge(r['status'])} {escape(r['id'])}{seen_from(r)}  {escape(r['summary'])}")
    if not details or r["status"] in ("ok", "skip"):
        return
    for key, value in r["evidence"].items():
        if is_rows(value):
            con.print(f"{indent}        [dim]{escape(key)}:[/]")
            room = con.width - len(indent) - 12
            for max_cell in (40, 30, 22):  # shorten cells first, drop columns last
                columns, cells = rows_table(value, max_cell=max_cell)
                if sum(max(len(c), *(len(r[i]) for r in cells)) + 2 for i, c in enumerate(columns)) <= room:
                    break
            columns, cells = _fit(columns, cells, room)
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


def _section(con, title: str, lines: list[str]) -> None:
    """A titled block of plain lines (the first on the title's line); nothing when there are none."""
    from rich.markup import escape

    if not lines:
        return
    con.print()
    con.print(f"[bold]{title}:[/] {escape(lines[0])}")
    for line in lines[1:]:
        con.print(f"    {escape(line)}")


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
            if cause.get("because"):
                con.print(f"    [dim]why this warning:[/] {escape(cause['because'])}")
            if cause.get("explains"):
                con.print(f"    [magenta]explains:[/] {escape(', '.join(e['check'] for e in cause['explains']))}")
        for other in (data.get("likely_causes") or [])[1:]:   # independent roots after the first
            con.print(f"[bold red]Also a likely cause:[/] [bold]{escape(other['layer'])}[/] "
                      f"({escape(other['check'])}): {escape(other['summary'])}")
            if other.get("hint"):
                con.print(f"    [bold]fix:[/] {escape(other['hint'])}")
        if data.get("unrelated_failures"):
            con.print()
            con.print("[bold]Also failing, not the cause of this symptom:[/]")
            for u in data["unrelated_failures"]:
                con.print(f"    {_badge(u['status'])} {escape(u['check'])}  {escape(u['summary'])}")
        _section(con, "Incident timeline", timeline_lines(data))
        _section(con, "Since the last good run", since_good_lines(data))
        con.print()
        for step in data["runbook"]:
            con.print(f"[bold]{step['step']}.[/] {_badge(step['verdict'])} [bold]{escape(step['layer'])}[/]: "
                      f"{escape(step['title'])}")
            con.print(f"      [dim]why:[/] {escape(step['why'])}")
            if step.get("consequence_of"):
                con.print(f"      [magenta]consequence of {escape(', '.join(step['consequence_of']))}[/]")
            for e in [e for e in step.get("explained_by") or [] if e.get("rule")]:   # causal rules' links
                con.print(f"      [magenta]{escape(e['check'])} explained by {escape(e['cause'])}: "
                          f"{escape(e['because'])}[/]")
            if step.get("unrelated"):
                con.print(f"      [dim]also failing, not the cause of this symptom: "
                          f"{escape(', '.join(step['unrelated']))}[/]")
            passed = [rid for rid in step["results"] if results[rid]["status"] == "ok"]
            for rid in step["results"]:
                if rid not in passed or step["verdict"] == "ok":
                    _result_lines(con, results[rid], "      ", details=True)
            if passed and step["verdict"] != "ok":
                con.print(f"      {_badge('ok')} {escape(', '.join(passed))}")
            if step["verdict"] != "ok" and not step.get("consequence_of"):
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
        smoke = data.get("smoke") or {}
        for key, word in (("new", "alerting from now on"), ("still_bad", "still bad"), ("recovered", "recovered"),
                          ("pending", f"bad, alerting after {smoke.get('fail_after')} runs in a row")):
            if smoke.get(key):
                con.print(f"{word}: {escape(', '.join(smoke[key]))}")
    return buf.getvalue()
