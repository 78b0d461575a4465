"""How the lab manager builds the studio variant: Studio's own backend in place of the stand-in app.

``prepare``: the source tree (``--studio-src``, ``$STUDIODOCTOR_STUDIO_SRC`` or the unpacked tarball), its
cached venv and its cached migrated cluster (:mod:`studio_db`). ``build``: PostgreSQL started from a copy of
that cluster, Studio's gunicorn and Celery worker with Studio's environment, Studio's nginx configuration.
``seed``: Studio's database from the template, the bucket, ``collectstatic`` and ``manage.py setup`` (admin
user, sample channels, one published to the bucket), and the admin's API token for the prober endpoints.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

from . import studio_db, studio_source


def prepare(lab, progress=lambda msg: None) -> None:
    info = lab.extra.get("studio") or {}
    if info.get("python") and Path(info["python"]).exists():
        return
    t0 = time.monotonic()
    src = studio_source.find_source(lab.extra.get("studio_src"))
    progress(f"studio source    {src}")
    python = studio_source.ensure_venv(src, progress)
    template = studio_db.template_cluster(src, python, progress)
    from .launcher import free_port

    lab.extra["studio"] = {"src": str(src), "python": str(python), "template": str(template),
                           "prepare_s": round(time.monotonic() - t0, 1), "postmark_port": free_port()}


def static_dir(lab) -> Path:
    """collectstatic's output, where nginx's workers (nobody) can read it."""
    from .servers.studio_nginx import _traversable_by_others

    if os.geteuid() == 0 and not _traversable_by_others(lab.root):
        digest = hashlib.sha1(str(lab.root.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"studiodoctor-static-{digest}"
    return lab.root / "studio-static"


POSTMARK_TOKEN = "lab-postmark-server-token"


def environment(lab) -> dict:
    """Studio's environment in this lab. Its mail (a publish mails the publishing user) goes to the lab's
    Postmark stand-in: python-postmark posts to https://api.postmarkapp.com/email through urllib, which takes
    ``https_proxy``: the stand-in accepts the CONNECT and answers as api.postmarkapp.com with a lab
    certificate (``SSL_CERT_FILE``: the lab CA); loopback stays direct (``no_proxy``)."""
    pg = lab["postgres"]
    env = studio_source.environment(db=studio_db.db_settings(pg, pg.dbname), redis_port=lab["redis"].port,
                                    bucket=lab["fake-gcs"].bucket, gcs_url=lab["fake-gcs"].url,
                                    static_dir=static_dir(lab), log_file=lab.root / "studio-django.log")
    port = lab.extra["studio"]["postmark_port"]
    return {**env, "EMAIL_CREDENTIALS_POSTMARK_API_KEY": POSTMARK_TOKEN, "https_proxy": f"http://127.0.0.1:{port}",
            "no_proxy": "127.0.0.1,localhost", "SSL_CERT_FILE": str(lab.root / "tls" / "ca.pem")}   # the LabCA


def build(lab, kind: str, cls):
    info = lab.extra["studio"]
    common = {"src": info["src"], "python": info["python"]}
    if kind == "postmark-api":
        cert, key = lab.ca.issue("api.postmarkapp.com", label="postmark")
        return cls(lab.root, port=info["postmark_port"], token=POSTMARK_TOKEN, connect_tls=[str(cert), str(key)])
    if kind == "postgres":
        return cls(lab.root, seed_data=info["template"])
    if kind == "celery":
        return cls(lab.root, env=environment(lab), **common)
    if kind.startswith("studio-app"):
        # pod 0 as the Makefile runs it (3 workers x 5 threads); the other frontend pods lighter (1 worker):
        # each Studio worker process holds ~150 MB
        return cls(lab.root, env=environment(lab), api_token=info.get("token", ""), name=kind,
                   workers=3 if kind == "studio-app" else 1, **common)
    # studio-nginx(-N): Studio's config in front of its pod's gunicorn; the bucket's virtual-hosted name
    # answered by a lab certificate
    cert, key = lab.ca.issue("*.storage.googleapis.com", label="storage-googleapis")
    return cls(lab.root, src=info["src"], app_port=lab[kind.replace("studio-nginx", "studio-app")].port,
               gate_url=lab["gcs-gate"].url, bucket=lab["fake-gcs"].bucket, static_dir=str(static_dir(lab)),
               cert=str(cert), key=str(key), name=kind)


def seed(lab, kind: str, svc) -> None:
    if kind == "postgres":
        studio_db.create_from_template(svc)
        return
    # fake-gcs: Studio's bucket, then Studio's own set-up writing to it
    svc.client().create_bucket(svc.bucket)
    info = lab.extra["studio"]
    src, python, env = Path(info["src"]), Path(info["python"]), environment(lab)
    out = static_dir(lab)
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o755)
    studio_source.webpack_stats(src, out)
    t0 = time.monotonic()
    studio_source.manage(python, src, env, "collectstatic", "--noinput", timeout=600)
    info["token"] = studio_db.setup(python, src, env)
    info["setup_s"] = round(time.monotonic() - t0, 1)
    lab.extra["samples"] = {}
