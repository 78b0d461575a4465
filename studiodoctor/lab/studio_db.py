"""Studio's database for the studio lab variant: migrated once, cached as a PostgreSQL template database.

Studio's ~160 migrations take ~17 s on two idle cores (minutes under load). They run once per set of
migration files, requirements and PostgreSQL version, as the Makefile's ``migrate`` target does
(``manage.py migrate`` then ``loadconstants``, with ``migration_production_settings``), into a database
``studio_migrated`` of a cluster of its own, marked ``IS_TEMPLATE`` and kept in the cache
(``~/.cache/studiodoctor/studio-pgdata/<hash>``). A lab's PostgreSQL starts from a copy of that cluster and
makes Studio's database with ``CREATE DATABASE ... TEMPLATE studio_migrated`` (a file copy, under a second).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from . import studio_source
from .launcher import LabError

TEMPLATE_DB = "studio_migrated"


def cache_key(src: Path) -> str:
    from .servers.postgres_server import pg_binary

    h = hashlib.sha256()
    for path in sorted((src / "contentcuration").glob("*/migrations/*.py")):
        h.update(str(path.relative_to(src)).encode())
        h.update(path.read_bytes())
    h.update((src / "requirements.txt").read_bytes())
    h.update(subprocess.run([pg_binary("postgres"), "--version"], capture_output=True, text=True).stdout.encode())
    return h.hexdigest()[:16]


def template_cluster(src: Path, python: Path, progress=lambda msg: None) -> Path:
    """The cached data directory holding ``studio_migrated`` (built now when absent)."""
    from .servers.postgres_server import PostgresServer

    dest = studio_source.cache_root() / "studio-pgdata" / cache_key(src)
    if (dest / ".complete").exists():
        return dest / "data"
    progress("migrating Studio's database once (cached as the template database studio_migrated)")
    work = dest.with_name(dest.name + ".build")
    shutil.rmtree(work, ignore_errors=True)
    pg = PostgresServer(work, dbname=TEMPLATE_DB)
    pg.start()
    try:
        env = studio_source.environment(db=db_settings(pg, TEMPLATE_DB), redis_port=1, bucket="studio-content",
                                        gcs_url="", static_dir=work / "static", log_file=work / "django.log",
                                        settings=studio_source.MIGRATION_SETTINGS)
        studio_source.manage(python, src, env, "migrate", "--noinput", timeout=1800)
        studio_source.manage(python, src, env, "loadconstants")
        pg.execute(f'ALTER DATABASE "{TEMPLATE_DB}" WITH IS_TEMPLATE true', dbname="postgres")
    finally:
        pg.stop(remove_data=False)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copytree(pg.data, dest / "data", symlinks=True)
    for stale in ("postmaster.pid", "postmaster.opts"):
        (dest / "data" / stale).unlink(missing_ok=True)
    shutil.rmtree(pg.pgdir, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    (dest / ".complete").write_text(TEMPLATE_DB + "\n")
    return dest / "data"


def db_settings(pg, name: str) -> dict:
    return {"host": "127.0.0.1", "port": pg.port, "name": name, "user": "postgres", "password": pg.password}


def create_from_template(pg) -> None:
    """Studio's database (``pg.dbname``) as a copy of the migrated template."""
    pg.execute(f'DROP DATABASE IF EXISTS "{pg.dbname}"', dbname="postgres")
    pg.execute(f'CREATE DATABASE "{pg.dbname}" TEMPLATE "{TEMPLATE_DB}"', dbname="postgres")


def setup(python: Path, src: Path, env: dict) -> str:
    """``manage.py setup``: Studio's admin user, sample channels, one of them published to the bucket;
    then a DRF token for the admin (the prober endpoints' ``Authorization: Token``). Returns the token."""
    studio_source.manage(python, src, env, "setup", timeout=900)
    out = studio_source.manage(python, src, env, "shell", "-c",
                               "from rest_framework.authtoken.models import Token; "
                               "from contentcuration.models import User; "
                               "print(Token.objects.get_or_create(user=User.objects.get(email='a@a.com'))[0].key)")
    token = out.strip().splitlines()[-1] if out.strip() else ""
    if not token:
        raise LabError("manage.py shell printed no token for Studio's admin user")
    return token
