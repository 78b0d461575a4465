"""app.* against the stand-in Studio app under real gunicorn, /healthz on a real PostgreSQL, with nginx
configured like Studio's in front (so each fault is also seen in the nginx checks and trace.hops)."""

from __future__ import annotations

import pytest
from studio_stack import *  # noqa: F401,F403  (fixtures: seeded, stack)
from studio_stack import Stack, likely_cause, run

from checks.django_app import HEALTHZ, LOGIN_PAGE, PROBERS, STEALTHZ
from checks.nginx import APP_PROXY, HEADERS, REACHABLE, STATIC
from checks.trace import TRACE
from studiodoctor.lab import studio_schema
from studiodoctor.lab.servers.postgres_server import PostgresServer
from studiodoctor import engine
from studiodoctor.model import Status
from studiodoctor.registry import default_registry

APP_IDS = (STEALTHZ, HEALTHZ, LOGIN_PAGE, PROBERS)


def test_healthy_app(stack, make_profile):
    res = run(make_profile, stack.sections(), layers=["app"])
    for cid in APP_IDS:
        assert res[cid].status is Status.OK, (cid, res[cid].summary)
    assert res[HEALTHZ].evidence["first_channel"] == studio_schema.LAB_CHANNEL_NAME
    assert res[STEALTHZ].evidence["body"] == "<3"
    assert res[STEALTHZ].evidence["latency_s"] < 2
    assert res[PROBERS].evidence["workers_answering"] == ["celery@studio-lab"]


def test_probers_wrong_token_is_an_error_not_a_failure(stack, make_profile):
    sections = stack.sections()
    sections["app"] = {**sections["app"], "api_token": "not-the-token"}
    res = run(make_profile, sections, layers=["app"])
    assert res[PROBERS].status is Status.ERROR
    assert "app.api_token was not accepted" in res[PROBERS].summary
    assert "not-the-token" not in res[PROBERS].summary


def test_probers_report_the_figures_the_old_prober_alerted_on(stack, make_profile):
    """Studio's readings of itself warn (the celery layer's own checks decide), with the figures."""
    stack.app.set_fault(probers={"celery_worker_status": {}, "queued_task_count": 73})
    res = run(make_profile, stack.sections(), layers=["app"])
    assert res[PROBERS].status is Status.WARN
    assert "no Celery worker answered Studio's own ping (asked up to 3 times)" in res[PROBERS].summary
    assert "73 tasks queued" in res[PROBERS].summary
    assert res[PROBERS].evidence["queued_task_count"] == 73
    assert res[PROBERS].evidence["asked_again"] == ["celery_worker_status"]


def _probers_in_turn(httpserver, answers: dict[str, list]):
    """Prober endpoints answering each request with the next of their answers (the last one then on; an int
    answers that status)."""
    import json

    from werkzeug import Response

    asked: list[str] = []

    def handler(request):
        name = request.path.rsplit("/", 1)[-1]
        asked.append(name)
        turn = answers[name]
        answer = turn.pop(0) if len(turn) > 1 else turn[0]
        if isinstance(answer, int):  # a status: Studio's view raised
            return Response("<h1>Server Error (500)</h1>", status=answer, content_type="text/html")
        return Response(json.dumps(answer), content_type="application/json")

    for name in answers:
        httpserver.expect_request(f"/api/probers/{name}").respond_with_handler(handler)
    return asked


HEALTHY_PROBERS = {"celery_worker_status": [{"celery@w1": {"ok": "pong"}}], "task_queue_status": [{"queued_task_count": 0}],
                   "unapplied_changes_status": [{"active_task_count": 0, "unapplied_changes_count": 0}],
                   "publishing_status": [[]]}


def _check_probers(httpserver, make_profile):
    profile = make_profile({"app": {"url": httpserver.url_for(""), "api_token": "t0ken"}}, timeout=8)
    return engine.check(profile, check_ids=[PROBERS]).results[0]


def test_a_reading_studio_could_not_take_is_asked_again_not_reported(httpserver, make_profile):
    """Measured on Studio's own code: after a broadcast, its next broker read answers a stale reply (a null
    queue count, a ping that heard nobody); asked again it reads true. That is not a finding."""
    asked = _probers_in_turn(httpserver, {**HEALTHY_PROBERS,
                                          "celery_worker_status": [{}, {}, {"celery@w1": {"ok": "pong"}}],
                                          "task_queue_status": [{"queued_task_count": None}, {"queued_task_count": 4}]})
    res = _check_probers(httpserver, make_profile)
    assert res.status is Status.OK, res.summary
    assert res.evidence["workers_answering"] == ["celery@w1"] and res.evidence["queued_task_count"] == 4
    assert res.evidence["asked_again"] == ["task_queue_status", "celery_worker_status"]
    assert asked.count("celery_worker_status") == 3 and asked.count("task_queue_status") == 2


def test_a_count_that_stays_null_is_said_unread_never_read_as_zero(httpserver, make_profile):
    _probers_in_turn(httpserver, {**HEALTHY_PROBERS, "task_queue_status": [{"queued_task_count": None}]})
    res = _check_probers(httpserver, make_profile)
    assert "? queued" in res.summary and "task_queue_status answered null twice" in res.summary
    assert res.evidence["queued_task_count"] is None and res.evidence["unread"] == ["task_queue_status"]


def test_login_page_with_a_non_prober_user_agent_warns(stack, make_profile):
    res = run(make_profile, {**stack.sections(), "http": {"user_agent": "curl/8.5"}}, layers=["app"])
    assert res[LOGIN_PAGE].status is Status.WARN
    assert "unsupported-browser" in res[LOGIN_PAGE].summary
    assert res[STEALTHZ].status is Status.OK


def test_app_stopped(stack, make_profile):
    """502 at nginx, app hop dead: app checks fail, nginx's 502 is explained by the app."""
    stack.app.stop()
    res = run(make_profile, stack.sections())
    for cid in (STEALTHZ, HEALTHZ, LOGIN_PAGE, PROBERS):
        assert res[cid].status is Status.FAIL, (cid, res[cid].summary)
        assert "unreachable from here: connection refused" in res[cid].summary
    assert res[REACHABLE].status is Status.OK                 # nginx itself answers
    assert res[STATIC].status is Status.OK                    # static files do not need the app
    assert res[APP_PROXY].status is Status.FAIL
    assert res[APP_PROXY].evidence["status"] == 502
    assert "app" in default_registry.get(APP_PROXY).explained_by
    assert res[HEADERS].status is Status.ERROR                # cannot compare without the app
    assert res[TRACE].status is Status.FAIL
    assert res[TRACE].evidence["first_bad_hop"] == "app"
    assert likely_cause(make_profile, stack.sections()) == ("app", STEALTHZ)


@pytest.mark.parametrize("stack", [2], indirect=True)
def test_app_slower_than_nginx_proxy_read_timeout(stack, make_profile):
    """nginx with a 2 s proxy_read_timeout, the app sleeping 3 s on every request: nginx answers 504 after
    about 2 s, the app's latency fails naming nginx's limit, the trace's first bad hop is the app."""
    stack.app.set_fault(slow_s=3)
    res = run(make_profile, stack.sections(), layers=["app", "nginx", "trace"], timeout=9)
    stealthz = res[STEALTHZ]
    assert stealthz.status is Status.FAIL, stealthz.summary
    assert "nginx's proxy_read_timeout of 2 s" in stealthz.summary
    assert stealthz.evidence["latency_s"] >= 3
    assert res[LOGIN_PAGE].status is Status.FAIL and "slowly" in res[LOGIN_PAGE].summary
    assert res[HEALTHZ].status is Status.FAIL                  # both slow: the app, not the database
    assert res[APP_PROXY].status is Status.FAIL
    assert res[APP_PROXY].evidence["status"] == 504
    assert res[APP_PROXY].evidence["inferred_proxy_read_timeout_s"] == 2
    assert res[TRACE].evidence["first_bad_hop"] == "app"
    assert "proxy_read_timeout" in res[TRACE].summary
    assert likely_cause(make_profile, stack.sections(), "504", timeout=9) == ("app", STEALTHZ)


def test_app_erroring_everywhere(stack, make_profile):
    stack.app.set_fault(error=True)
    res = run(make_profile, stack.sections(), layers=["app", "trace"])
    assert res[STEALTHZ].status is Status.FAIL
    assert res[STEALTHZ].evidence["status"] == 500
    assert res[HEALTHZ].status is Status.FAIL
    assert "/stealthz does not answer 200 either" in res[HEALTHZ].summary
    assert res[TRACE].evidence["first_bad_hop"] == "app"


def test_postgres_stopped(seeded, lab_root, make_profile):
    """Own PostgreSQL (stopped mid-test): /healthz fails, /stealthz still answers, the cause is postgres."""
    _, gcs = seeded
    pg = PostgresServer(lab_root / "pg-app-stop").start()
    stack = Stack(lab_root / "studio-pg-stop", pg, gcs)
    try:
        from studio_stack import seed_postgres

        seed_postgres(pg)
        stack.start()
        before = run(make_profile, stack.sections(), layers=["app"])
        assert before[HEALTHZ].status is Status.OK, before[HEALTHZ].summary
        pg.stop()
        res = run(make_profile, stack.sections())
        cause = likely_cause(make_profile, stack.sections(postgres={"dsn": pg.dsn()}))
    finally:
        stack.stop()
        pg.stop()
    healthz = res[HEALTHZ]
    assert healthz.status is Status.FAIL
    assert "while /stealthz answers 200" in healthz.summary and "PostgreSQL" in healthz.summary
    sampled = healthz.evidence.pop("sampled")
    healthz.evidence.pop("round_trips", None)  # the runner's count of the samples' round trips
    assert healthz.evidence == {"status": 500, "latency_s": healthz.evidence["latency_s"], "stealthz_status": 200}
    assert (sampled["sent"], sampled["failed"], sampled["statuses"]) == (5, 5, [500] * 5)  # down, not intermittent
    assert default_registry.get(HEALTHZ).explained_by == ("postgres",)
    assert res[STEALTHZ].status is Status.OK
    assert res[APP_PROXY].status is Status.OK
    assert res[TRACE].status is Status.OK and res[TRACE].evidence["first_bad_hop"] is None
    assert cause[0] == "postgres"                      # diagnose 502 names the database, not the app


def test_probers_answer_without_the_figures_is_an_error(make_profile):
    """A prober endpoint whose JSON lacks the figure (another app, another version) is not '0 queued: ok'."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    answers = {"celery_worker_status": {"celery@w1": {"ok": "pong"}}, "task_queue_status": {"detail": "ok"},
               "unapplied_changes_status": {"active_task_count": 0, "unapplied_changes_count": 0},
               "publishing_status": []}

    class Probers(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(answers[self.path.rsplit("/", 1)[-1]]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Probers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        from studiodoctor import engine

        profile = make_profile({"app": {"url": f"http://127.0.0.1:{server.server_port}", "api_token": "t0ken-abc"}},
                               timeout=5)
        r = engine.check(profile, check_ids=[PROBERS]).results[0]
    finally:
        server.shutdown()
        server.server_close()
    assert r.status is Status.ERROR, r.summary
    assert "task_queue_status" in r.summary and "queued_task_count" in r.summary


def test_a_slow_app_is_slow_twice_and_still_warns(stack, make_profile):
    """The warning band (2 s .. near nginx's 100 s) is judged on the samples' median: a really slow app
    reads slow every time and warns, with the samples in the evidence."""
    stack.app.set_fault(slow_s=2.3)
    res = run(make_profile, stack.sections(), layers=["app"], timeout=12)[STEALTHZ]
    assert res.status is Status.WARN, res.summary
    assert res.evidence["sampled"]["sent"] >= 2
    assert min(res.evidence["sampled"]["latencies_ms"]) >= 2300
    assert res.evidence["latency_s"] >= 2.3
    assert res.samples["sent"] == res.evidence["sampled"]["sent"] and res.samples["p50_ms"] >= 2300


def test_one_slow_reading_is_taken_again_before_blaming_the_app(httpserver, make_profile):
    """One answer delayed (the doctor's own load, a blip), the next at once: the app is not slow."""
    import time

    calls = []

    def stealthz(request):
        from werkzeug import Response

        calls.append(time.monotonic())
        if len(calls) == 1:
            time.sleep(2.2)
        return Response("<3")

    httpserver.expect_request("/stealthz").respond_with_handler(stealthz)
    res = run(make_profile, {"app": {"url": httpserver.url_for("")}}, layers=["app"], timeout=8)[STEALTHZ]
    assert res.status is Status.OK, res.summary
    first, *others = res.evidence["sampled"]["latencies_ms"]
    assert first >= 2200 and others and max(others) < 1000
    assert res.evidence["latency_s"] < 1      # the median, not the delayed reading


def test_an_app_failing_one_request_in_three_is_intermittent_not_lucky(stack, make_profile):
    """Every third request to each path but /stealthz answers 500 (real gunicorn): one probe would be lucky
    two times in three; five samples always catch it, say the ratio and leave /stealthz ok. The app, not
    nginx, is the likely cause of 502 and python-error."""
    stack.app.set_fault(fail_every=3)
    res = run(make_profile, stack.sections(), layers=["app", "nginx"])
    assert res[STEALTHZ].status is Status.OK, res[STEALTHZ].summary
    for cid in (HEALTHZ, LOGIN_PAGE):
        r = res[cid]
        assert r.status is Status.FAIL, (cid, r.summary)
        assert "intermittent:" in r.summary and "of 5 answered 500" in r.summary, r.summary
        assert 1 <= r.samples["failed"] <= 2 and r.samples["sent"] == 5
        assert r.evidence["sampled"]["statuses"].count(500) == r.samples["failed"]
        assert r.evidence["sampled"]["backend_requests"] >= 5
    assert res[APP_PROXY].status is Status.OK                 # /stealthz through nginx never fails
    assert likely_cause(make_profile, stack.sections())[0] == "app"
    assert likely_cause(make_profile, stack.sections(), "python-error")[0] == "app"


def test_one_sample_is_the_old_single_probe(stack, make_profile):
    """--samples 1 (profile key samples = 1): one request per probe, as before sampling."""
    stack.app.set_fault(fail_every=3)
    res = run(make_profile, stack.sections(), layers=["app"], samples=1)
    assert res[HEALTHZ].samples["sent"] == 1
    assert res[HEALTHZ].status in (Status.OK, Status.FAIL)     # lucky or not: one draw cannot say "intermittent"
    assert "intermittent" not in res[HEALTHZ].summary


@pytest.mark.parametrize("stack", [2], indirect=True)
def test_a_slow_tail_fails_by_its_share(stack, make_profile):
    """Every third request to /healthz and the login page sleeps 3 s, nginx gives up at 2 s: the medians
    are fast, the tail is past nginx's limit, so the app checks fail naming the tail, and /stealthz
    (never slow) stays ok."""
    stack.app.set_fault(slow_every=3, slow_every_s=3)
    res = run(make_profile, stack.sections(), layers=["app"], timeout=9)
    assert res[STEALTHZ].status is Status.OK, res[STEALTHZ].summary
    healthz = res[HEALTHZ]
    assert healthz.status is Status.FAIL, healthz.summary
    assert "slow tail" in healthz.summary and "nginx's proxy_read_timeout of 2 s" in healthz.summary
    assert healthz.evidence["latency_s"] < 1 and healthz.samples["p95_ms"] >= 3000


def test_a_prober_that_raised_once_is_asked_again_and_twice_is_the_finding(httpserver, make_profile):
    """Studio's ping view raised (500) on a healthy Studio in a fresh-clone CI, the stale broker reply again."""
    asked = _probers_in_turn(httpserver, {**HEALTHY_PROBERS,
                                          "celery_worker_status": [500, {"celery@w1": {"ok": "pong"}}]})
    res = _check_probers(httpserver, make_profile)
    assert res.status is Status.OK, res.summary
    assert res.evidence["asked_again"] == ["celery_worker_status"] and asked.count("celery_worker_status") == 2


def test_a_prober_that_raises_twice_fails(httpserver, make_profile):
    _probers_in_turn(httpserver, {**HEALTHY_PROBERS, "task_queue_status": [500]})
    res = _check_probers(httpserver, make_profile)
    assert res.status is Status.FAIL and res.summary == "/api/probers/task_queue_status answered 500 (asked twice)"
