"""trace.hops on a real nginx configured like Studio's in front of the stand-in app under real gunicorn
(/healthz on the real lab PostgreSQL, /content/ on fake-gcs-server)."""

from __future__ import annotations

from studio_stack import *  # noqa: F401,F403  (fixtures: seeded, stack)
from studio_stack import STORAGE_OBJECT, run

from checks.trace import TRACE
from studiodoctor.lab.servers.studio_nginx import STATIC_SAMPLE
from studiodoctor.model import Status
from studiodoctor.registry import default_registry


# --- trace.hops ----------------------------------------------------------------------------------

def test_trace_healthy_lists_every_hop_and_skips_unconfigured(stack, make_profile):
    res = run(make_profile, stack.sections(), layers=["trace"])
    trace = res[TRACE]
    assert trace.status is Status.OK, trace.summary
    ev = trace.evidence
    assert ev["first_bad_hop"] is None
    assert ev["hops"] == ["nginx", "app"]
    assert ev["skipped_hops"] == ["edge", "origin"]
    rows = {(r["hop"], r["path"]): r for r in ev["rows"] if r.get("verdict") != "skipped"}
    assert rows[("nginx", "/stealthz")]["status"] == 200 and rows[("app", "/stealthz")]["status"] == 200
    assert rows[("nginx", "/stealthz")]["server"].startswith("nginx")
    assert rows[("app", "/stealthz")]["server"] == "gunicorn"
    assert rows[("nginx", STATIC_SAMPLE)]["status"] == 200
    content = rows[("nginx", f"/content/{STORAGE_OBJECT}")]
    assert content["cache_control"] == "public, max-age=31536000, immutable, no-transform"
    assert ("app", STATIC_SAMPLE) not in rows          # gunicorn does not serve static files
    skipped = [r for r in ev["rows"] if r.get("verdict") == "skipped"]
    assert {r["why"] for r in skipped} == {"public_urls is empty", "traefik.entrypoint is not set"}


def test_trace_edge_and_origin_hops_through_http_resolve_app_stopped(stack, make_profile):
    """Edge and origin stand-ins reached by name through http.resolve (like curl --resolve): with the app
    stopped every outer hop answers 502 and the first bad hop is the app."""
    port = stack.nginx.port
    sections = stack.sections(
        http={"resolve": {f"studio.localtest:{port}": f"127.0.0.1:{port}",
                          f"master.studio.localtest:{port}": f"127.0.0.1:{port}"}},
        traefik={"entrypoint": f"http://127.0.0.1:{port}"})
    healthy = run(make_profile, sections, layers=["trace"], public_urls=[f"http://studio.localtest:{port}"])[TRACE]
    assert healthy.status is Status.OK, healthy.summary
    assert healthy.evidence["hops"] == ["edge", "origin", "nginx", "app"]

    stack.app.stop()
    res = run(make_profile, sections, layers=["trace"], public_urls=[f"http://studio.localtest:{port}"])
    trace = res[TRACE]
    assert trace.status is Status.FAIL
    assert trace.evidence["first_bad_hop"] == "app"
    assert trace.evidence["bad_at"] == {"/stealthz": "app"}
    stealthz = {r["hop"]: r for r in trace.evidence["rows"] if r["path"] == "/stealthz"}
    assert [stealthz[h]["status"] for h in ("edge", "origin", "nginx")] == [502, 502, 502]
    assert stealthz["app"]["error"] == "connection refused"
    assert "first bad hop: app" in trace.summary


def test_trace_is_explained_by_the_layers_of_its_hops_behind_the_edge():
    chk = default_registry.load_plugins().get(TRACE)
    assert chk.layer == "trace"
    # the edge explains the trace only when the trace goes bad there first (a causal rule, with evidence)
    assert set(chk.explained_by) == {"traefik", "nginx", "app"}


def test_trace_skips_with_no_hop(make_profile):
    res = run(make_profile, {}, layers=["trace"])
    assert res[TRACE].status is Status.SKIP
    assert res[TRACE].evidence["skipped_hops"] == ["edge", "origin", "nginx", "app"]
