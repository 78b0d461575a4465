"""Renderers: each takes the report as redacted data (``Report.to_dict``) and returns text."""

FORMATS = ("table", "json", "markdown")


def render(data: dict, fmt: str, *, color: bool = False, width: int = 100) -> str:
    if fmt == "json":
        from .json_report import render_json

        return render_json(data)
    if fmt == "markdown":
        from .markdown import render_markdown

        return render_markdown(data)
    from .table import render_table

    return render_table(data, color=color, width=width)


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
