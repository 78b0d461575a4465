"""Renderers: each takes the report as redacted data (``Report.to_dict``) and returns text.

One module per format, behind one interface: ``FORMATS`` maps the name given to ``--format`` to
``module:function``, and the function takes ``(data, *, color=False, width=100)`` (ignoring what it
does not use). A new format is one module here, one line below and one test.

May import: nothing of the engine but ``studiodoctor.metrics`` and the report's data (renderers are
functions of data: ``diagnosis`` and ``commands`` call them, never the reverse).
"""

from importlib import import_module

FORMATS = {
    "table": "table:render_table",
    "json": "json_report:render_json",
    "markdown": "markdown:render_markdown",
    "nagios": "nagios:render_nagios",
    "prometheus": "prometheus:render_prometheus",
    "junit": "junit:render_junit",
    "html": "html:render_html",
}


def render(data: dict, fmt: str, *, color: bool = False, width: int = 100) -> str:
    module, func = FORMATS[fmt].split(":")
    return getattr(import_module(f"{__name__}.{module}"), func)(data, color=color, width=width)


def seen_from(result: dict) -> str:
    """" (seen from the cluster)" for a result the in-cluster doctor saw (``vantage``), else ""."""
    return " (seen from the cluster)" if result.get("vantage") == "cluster" else ""


def since_good_lines(data: dict) -> list[str]:
    """``diagnose --since-good``: one line per changed evidence value, ordered by layer (plain text)."""
    since = data.get("since_good")
    if since is None:
        return []
    lines = [since["note"]]
    for c in since["changes"]:
        lines.append(f"{c['check']}: {c['key']}: {format_value(c['before'])} -> {format_value(c['now'])}")
    return lines


def watch_line(watch: dict) -> str:
    """``diagnose --watch``: one line about the watch (how long, how many runs, how it ended)."""
    end = {"recovered": "recovered", "until": "the --until limit was reached",
           "interrupted": "interrupted"}.get(watch.get("ended", ""), watch.get("ended", ""))
    return (f"watched from {watch['started_at']} to {watch['ended_at']} ({watch['elapsed_s']:.0f} s, "
            f"{watch['runs']} runs every {watch['interval_s']:g} s): {end}")


def timeline_lines(data: dict) -> list[str]:
    """``diagnose --watch``: the watch's line, then one line per status change (plain text)."""
    watch = data.get("watch")
    if not watch:
        return []
    lines = [watch_line(watch)]
    for e in watch["events"]:
        before = e["before"] or "first seen"
        lines.append(f"{e['at']} (+{e['elapsed_s']:.0f} s) {e['check']}: {before} -> {e['now']}: {e['summary']}")
    return lines


def format_value(value) -> str:
    """One evidence value on one line (lists and dicts compactly)."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, dict) for v in value):
            return "; ".join(", ".join(f"{k}={format_value(x)}" for k, x in v.items()) for v in value)
        return ", ".join(format_value(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={format_value(v)}" for k, v in value.items()) or "-"
    if value is None:
        return "-"
    return str(value)


def is_rows(value) -> bool:
    """A list of dicts (e.g. trace.hops's per-hop rows) is shown as a table, not one long line."""
    return isinstance(value, list) and len(value) > 1 and all(isinstance(v, dict) for v in value)


def rows_table(rows: list[dict], max_cell: int = 48) -> tuple[list[str], list[list[str]]]:
    """(columns, cells): every key that has a value in some row, in first-seen order."""
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns and any(r.get(key) not in (None, "", [], {}) for r in rows):
                columns.append(key)
    cells = []
    for row in rows:
        line = []
        for key in columns:
            text = format_value(row.get(key)) if row.get(key) not in (None, "") else ""
            line.append(text if len(text) <= max_cell else text[: max_cell - 1] + "…")
        cells.append(line)
    return columns, cells
