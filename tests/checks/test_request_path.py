"""path.trace (and the shared Studio stack fixtures): real nginx configured like Studio's in front of the
stand-in app under real gunicorn, /healthz on the real lab PostgreSQL, /content/ on fake-gcs-server."""

from __future__ import annotations

import gzip

import pytest

from checks.request_path import TRACE
from studiodoctor import engine
from studiodoctor.lab import studio_schema
from studiodoctor.lab.studio_app import StudioApp
from studiodoctor.lab.studio_nginx import STATIC_SAMPLE, StudioNginx
from studiodoctor.model import Status
from studiodoctor.registry import default_registry

BUCKET = "studio-content"
STORAGE_OBJECT = "storage/9e/1f/9e1f0c2a5b7d4e8f9a0b1c2d3e4f5a6b.mp4"
DB_CHANNEL = "5e1f0c2a5b7d4e8f9a0b1c2d3e4f5a6b"
DB_OBJECT = f"databases/{DB_CHANNEL}.sqlite3"
API_TOKEN = "lab-admin-token-6f2d"


def seed_postgres(pg) -> None:
    with pg.connect() as conn:
        studio_schema.create_schema(conn)
        exists = conn.execute(f"SELECT 1 FROM {studio_schema.CHANNEL_TABLE} LIMIT 1").fetchone()
        if not exists:
            studio_schema.add_channel(conn, studio_schema.LAB_CHANNEL_ID, studio_schema.LAB_CHANNEL_NAME,
                                      studio_schema.LAB_MAIN_TREE_ID)


def seed_bucket(gcs) -> None:
    from google.api_core.exceptions import Conflict

    client = gcs.client()
    try:
        bucket = client.create_bucket(BUCKET)
    except Conflict:
        bucket = client.bucket(BUCKET)
    blob = bucket.blob(STORAGE_OBJECT)
    blob.cache_control = "public, max-age=3600"           # what GCS would send; nginx must override it
    blob.upload_from_string(b"\x00" * 256, content_type="video/mp4")
    blob = bucket.blob(DB_OBJECT)
    blob.cache_control = "private, max-age=5, no-transform"  # what Studio's storage backend sets
    blob.content_encoding = "gzip"
    blob.upload_from_string(gzip.compress(b"SQLite format 3\x00"), content_type="application/octet-stream")


@pytest.fixture(scope="session")
def lab_root(lab_root):
    """pytest makes its base temp dirs 0700; the `postgres` user that initdb runs as must traverse them."""
    for parent in (lab_root.parent, lab_root.parent.parent):
        if parent.stat().st_mode & 0o777 == 0o700:
            parent.chmod(0o755)
    return lab_root


@pytest.fixture(scope="module")
def seeded(postgres_server, fake_gcs):
    seed_postgres(postgres_server)
    seed_bucket(fake_gcs)
    return postgres_server, fake_gcs


class Stack:
    def __init__(self, root, pg, gcs, proxy_read_timeout=100):
        self.app = StudioApp(root, dsn=pg.dsn(), api_token=API_TOKEN, threads=16)
        self.nginx = StudioNginx(root, app_port=self.app.port, gcs_url=gcs.url, bucket=BUCKET,
                                 proxy_read_timeout=proxy_read_timeout)

    def start(self):
        self.app.start()
        self.nginx.start()
        return self

    def stop(self):
        self.nginx.stop()
        self.app.stop()

    def sections(self, **extra) -> dict:
        nginx = {**self.nginx.profile()["nginx"], "storage_path": f"/content/{STORAGE_OBJECT}",
                 "database_path": f"/content/{DB_OBJECT}"}
        return {"nginx": nginx, **self.app.profile(), **extra}


@pytest.fixture
def stack(seeded, lab_root, request):
    pg, gcs = seeded
    marker = request.node.get_closest_marker("proxy_read_timeout")
    s = Stack(lab_root / f"studio-{request.node.name[:40]}", pg, gcs,
              proxy_read_timeout=marker.args[0] if marker else 100)
    try:
        yield s.start()
    finally:
        s.stop()


def run(make_profile, sections, layers=("app", "nginx", "path"), timeout=8, **top):
    report = engine.check(make_profile(sections, timeout=timeout, **top), layers=list(layers))
    return {r.id: r for r in report.results}


# --- path.trace ----------------------------------------------------------------------------------

def test_trace_healthy_lists_every_hop_and_skips_unconfigured(stack, make_profile):
    res = run(make_profile, stack.sections(), layers=["path"])
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
    healthy = run(make_profile, sections, layers=["path"], public_urls=[f"http://studio.localtest:{port}"])[TRACE]
    assert healthy.status is Status.OK, healthy.summary
    assert healthy.evidence["hops"] == ["edge", "origin", "nginx", "app"]

    stack.app.stop()
    res = run(make_profile, sections, layers=["path"], public_urls=[f"http://studio.localtest:{port}"])
    trace = res[TRACE]
    assert trace.status is Status.FAIL
    assert trace.evidence["first_bad_hop"] == "app"
    assert trace.evidence["bad_at"] == {"/stealthz": "app"}
    stealthz = {r["hop"]: r for r in trace.evidence["rows"] if r["path"] == "/stealthz"}
    assert [stealthz[h]["status"] for h in ("edge", "origin", "nginx")] == [502, 502, 502]
    assert stealthz["app"]["error"] == "connection refused"
    assert "first bad hop: app" in trace.summary


def test_trace_is_explained_by_the_layers_of_its_hops():
    chk = default_registry.load_plugins().get(TRACE)
    assert chk.layer == "path"
    assert set(chk.explained_by) == {"cloudflare", "traefik", "nginx", "app"}


def test_trace_skips_with_no_hop(make_profile):
    res = run(make_profile, {}, layers=["path"])
    assert res[TRACE].status is Status.SKIP
    assert res[TRACE].evidence["skipped_hops"] == ["edge", "origin", "nginx", "app"]
