"""The Studio request-path stack shared by the nginx, app and path tests (fixtures, not tests):
real nginx configured like Studio's in front of the stand-in app under real gunicorn, /healthz on the real
lab PostgreSQL, /content/ on fake-gcs-server. Import the fixtures: ``from studio_stack import *``."""

from __future__ import annotations

import gzip

import pytest

from studiodoctor import engine
from studiodoctor.lab import studio_schema
from studiodoctor.lab.servers.studio_app import StudioApp
from studiodoctor.lab.servers.studio_nginx import StudioNginx

__all__ = ["BUCKET", "STORAGE_OBJECT", "DB_CHANNEL", "DB_OBJECT", "API_TOKEN", "Stack", "seeded",
           "stack", "run", "likely_cause", "seed_postgres", "seed_bucket"]

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
        # config_file: what an operator saves from `nginx -T` (here the lab nginx's own rendered config)
        nginx = {**self.nginx.profile()["nginx"], "storage_path": f"/content/{STORAGE_OBJECT}",
                 "database_path": f"/content/{DB_OBJECT}", "config_file": str(self.nginx.conf)}
        return {"nginx": nginx, **self.app.profile(), **extra}


@pytest.fixture
def stack(seeded, lab_root, request):
    pg, gcs = seeded
    # nginx's proxy_read_timeout: 100 s like Studio, or e.g. 2 with parametrize("stack", [2], indirect=True)
    s = Stack(lab_root / f"studio-{request.node.name[:40]}", pg, gcs,
              proxy_read_timeout=getattr(request, "param", 100))
    try:
        yield s.start()
    finally:
        s.stop()


def run(make_profile, sections, layers=("app", "nginx", "trace"), timeout=8, **top):
    report = engine.check(make_profile(sections, timeout=timeout, **top), layers=list(layers))
    return {r.id: r for r in report.results}


def likely_cause(make_profile, sections, symptom="502", timeout=8) -> tuple[str | None, str | None]:
    """(layer, check id) that ``diagnose SYMPTOM`` names as the likely cause."""
    report = engine.diagnose(make_profile(sections, timeout=timeout), symptom)
    cause = report.likely_cause or {}
    return cause.get("layer"), cause.get("check")
