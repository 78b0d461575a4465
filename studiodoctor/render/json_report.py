"""JSON output: the report as data (schema ``studiodoctor.report/1``)."""

import json


def render_json(data: dict, **_) -> str:
    return json.dumps(data, indent=2, default=str) + "\n"
