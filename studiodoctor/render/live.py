"""The terminal view of ``diagnose --watch``, redrawn in place (rich Live) after every run.

One header line (symptom, runs, elapsed time, how it ends), the likely cause now, then every check that
is not ok or has changed during the watch: its status now (word, not only color), since when, and its
changes in order. Off a terminal the same changes are plain lines, one per event (``event_line``).
"""

from __future__ import annotations

from .table import MARK, STYLE


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def event_line(event: dict) -> str:
    before = MARK.get(event["before"], "-") if event.get("before") else "first seen"
    return (f"{event['at']} (+{_clock(event['elapsed_s'])}) {event['check']}: {before} -> "
            f"{MARK.get(event['now'], event['now'])}  {event['summary']}")


def view(watch, data: dict | None, symptom: str):
    """A rich renderable of the watch and its last run (``None`` while the first one runs)."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text
    from rich.console import Group

    ends = "until recovered" + (f" or {watch.until:g} s" if watch.until else "") + " (Ctrl-C to stop)"
    head = (f"[bold]watching diagnose {escape(symptom)}[/]  run {watch.runs}, elapsed {_clock(watch.elapsed())}, "
            f"every {watch.interval:g} s, {ends}")
    if watch.ended == "recovered":
        head += "  [bold green]RECOVERED[/]"
    parts = [Text.from_markup(head)]
    if data is None:
        return Group(*parts, Text("first run in progress..."))
    cause = data.get("likely_cause")
    if cause:
        parts.append(Text.from_markup(f"[bold red]Likely cause now:[/] [bold]{escape(str(cause['layer']))}[/] "
                                      f"({escape(str(cause['check']))}): {escape(str(cause['summary']))}"))
    history: dict[str, list[dict]] = {}
    for e in watch.events:
        history.setdefault(e["check"], []).append(e)
    table = Table(show_header=True, header_style="bold", expand=True, box=None, pad_edge=False)
    for column in ("status", "check", "since", "changes"):
        table.add_column(column, no_wrap=column != "changes", overflow="fold")
    table.add_column("summary", no_wrap=True, overflow="ellipsis", ratio=1)
    for r in data["results"]:
        if r["status"] == "ok" and r["id"] not in history:
            continue
        changes = " → ".join(f"{MARK.get(e['now'], e['now'])} +{_clock(e['elapsed_s'])}"
                             for e in history.get(r["id"], []))
        table.add_row(Text(MARK.get(r["status"], r["status"]), style=STYLE.get(r["status"], "")), r["id"],
                      watch.changed_at.get(r["id"], "")[11:19], changes, r["summary"][:100])
    parts.append(table if table.row_count else Text("every check is ok"))
    return Group(*parts)
