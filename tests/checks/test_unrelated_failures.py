"""Only what can cause the symptom can be its cause, on real servers: gunicorn stopped behind Studio's
nginx whose /content/ lists the bucket (a standing exposure) — `diagnose 502` names the app and lists
the listing as also failing, not the cause, in every format that shows causes."""

from __future__ import annotations

import json

from studio_stack import *  # noqa: F401,F403  (fixtures: seeded, stack)

from checks.nginx import CONTENT_LISTING
from studiodoctor import engine
from studiodoctor.model import Status
from studiodoctor.render import render
from studiodoctor.secrets import Redactor


def test_gunicorn_stopped_on_a_listable_bucket_names_the_app(stack, make_profile):
    stack.nginx.set_fault("bucket_listing")   # /content/ proxied to the bucket root, which lists anonymously
    stack.app.stop()
    report = engine.diagnose(make_profile(stack.sections(), timeout=8), "502")
    results = {r.id: r for r in report.results}
    # the standing exposure is really there: nginx's /content/ lists the bucket 
    assert results[CONTENT_LISTING].status is Status.FAIL, results[CONTENT_LISTING].summary
    assert report.likely_cause["layer"] == "app", report.likely_cause
    assert report.likely_causes[0] == report.likely_cause and len(report.likely_causes) == 1
    unrelated = {u["check"]: u for u in report.unrelated_failures}
    assert CONTENT_LISTING in unrelated and "cannot produce `502`" in unrelated[CONTENT_LISTING]["why"]
    nginx = next(s for s in report.runbook if s["layer"] == "nginx")
    assert CONTENT_LISTING in nginx["unrelated"]
    data = report.to_dict(Redactor())
    assert json.loads(render(data, "json"))["unrelated_failures"][0]["check"] == CONTENT_LISTING
    table = render(data, "table")
    assert "Also failing, not the cause of this symptom" in table and CONTENT_LISTING in table.split("Likely")[1]
    markdown = render(data, "markdown")
    assert "## Also failing, not the cause of this symptom" in markdown
    nagios = render(data, "nagios").splitlines()
    assert nagios[1].startswith("likely cause: app")
    assert any(CONTENT_LISTING in line and "not the cause" in line for line in nagios)
