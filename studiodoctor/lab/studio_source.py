"""Kolibri Studio's own source tree for the ``studio`` lab variant: where it is, its venv, its environment.

A source tree is a checkout of ``learningequality/studio`` (``--studio-src DIR`` or
``$STUDIODOCTOR_STUDIO_SRC``), or else the backend tarball beside this repository
(``../shared/studio/studio-backend-*.tar.gz``, or ``$STUDIODOCTOR_STUDIO_TARBALL``) unpacked once into
the cache (``~/.cache/studiodoctor/studio-src/<hash>/studio``). Studio's pinned requirements are installed
into a venv of their own, cached by the hash of ``requirements.txt`` and the Python version
(``~/.cache/studiodoctor/studio-venv/<hash>``): Django 3.2, psycopg2, Studio's celery and redis-py pins never
meet the project's. Everything Studio runs is started with that venv's ``python -m ...`` from
``<src>/contentcuration``, with the environment Studio's settings read (:func:`environment`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from .launcher import LabError

SRC_ENV = "STUDIODOCTOR_STUDIO_SRC"
TARBALL_ENV = "STUDIODOCTOR_STUDIO_TARBALL"
PRODUCTION_SETTINGS = "contentcuration.production_settings"
MIGRATION_SETTINGS = "contentcuration.migration_production_settings"   # the Makefile's `migrate` target


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "studiodoctor"


def _digest(*parts: bytes, n: int = 16) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:n]


def default_tarball() -> Path | None:
    """``$STUDIODOCTOR_STUDIO_TARBALL``, else the newest ``studio-backend-*.tar.gz`` in a ``shared/studio``
    folder beside this checkout or one of its parents (CI lays ``shared/`` beside the clone)."""
    env = os.environ.get(TARBALL_ENV)
    if env:
        return Path(env) if Path(env).is_file() else None
    here = Path(__file__).resolve().parents[2]
    for parent in (here, *here.parents):
        found = sorted((parent / "shared" / "studio").glob("studio-backend-*.tar.gz"))
        if found:
            return found[-1]
    return None


def is_source(path: Path) -> bool:
    return (path / "contentcuration" / "manage.py").is_file() and (path / "requirements.txt").is_file()


def unpack(tarball: Path) -> Path:
    """The tarball unpacked once into the cache; returns its ``studio/`` tree."""
    dest = cache_root() / "studio-src" / _digest(tarball.name.encode(), str(tarball.stat().st_size).encode())
    tree = dest / "studio"
    if is_source(tree):
        return tree
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp, filter="data")
    if not is_source(tmp / "studio"):
        shutil.rmtree(tmp, ignore_errors=True)
        raise LabError(f"{tarball} holds no studio/contentcuration/manage.py: not Studio's backend tarball")
    try:
        tmp.rename(dest)
    except OSError:  # another process unpacked it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return tree


def find_source(path: str | os.PathLike | None = None) -> Path:
    """The Studio source tree to run: ``path``, ``$STUDIODOCTOR_STUDIO_SRC``, or the unpacked tarball."""
    given = path or os.environ.get(SRC_ENV)
    if given:
        src = Path(given).expanduser().resolve()
        if not is_source(src):
            raise LabError(f"{src} is not a Studio checkout (no contentcuration/manage.py and requirements.txt)")
        return src
    tarball = default_tarball()
    if tarball is None:
        raise LabError("no Studio source tree: pass --studio-src DIR (a checkout of learningequality/studio) "
                       f"or set {SRC_ENV}")
    return unpack(tarball)


def venv_dir(src: Path) -> Path:
    version = f"{sys.version_info[0]}.{sys.version_info[1]}".encode()
    return cache_root() / "studio-venv" / _digest((src / "requirements.txt").read_bytes(), version)


def venv_python(src: Path) -> Path | None:
    """The cached venv's python when it is complete, else None."""
    venv = venv_dir(src)
    return venv / "bin" / "python" if (venv / ".complete").exists() else None


def ensure_venv(src: Path, progress=lambda msg: None) -> Path:
    """Studio's venv (``pip install -r requirements.txt``), built once per requirements hash; its python."""
    python = venv_python(src)
    if python:
        return python
    venv = venv_dir(src)
    tmp = venv.with_name(venv.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)
    progress(f"installing Studio's requirements into {venv} (once per requirements.txt)")
    steps = ([base, "-m", "venv", str(tmp)],
             [str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
              "-r", str(src / "requirements.txt")])
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            last = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()
                    and not ln.startswith("WARNING: Location")][-1:]
            raise LabError(f"Studio's venv: {' '.join(cmd[2:4])} failed: {last[0] if last else proc.returncode}")
    (tmp / ".complete").write_text(json.dumps({"requirements": str(src / "requirements.txt")}))
    try:
        tmp.rename(venv)   # `python -m ...` only: the venv's scripts keep the temporary path in their shebang
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return venv / "bin" / "python"


def environment(*, db: dict, redis_port: int, bucket: str, gcs_url: str, static_dir: Path, log_file: Path,
                settings: str = PRODUCTION_SETTINGS) -> dict[str, str]:
    """The environment Studio's settings read (``contentcuration/settings.py``, ``production_settings``).

    ``db``: host, port, name, user, password. Studio's ``DATABASES`` has ``PORT: ""``, so libpq's ``PGPORT``
    gives the lab's port. ``gcs_url``: the storage emulator the app writes to with its credentials
    (``STORAGE_EMULATOR_HOST``, read by google-cloud-storage)."""
    return {"DJANGO_SETTINGS_MODULE": settings, "DATA_DB_HOST": db["host"], "PGPORT": str(db["port"]),
            "DATA_DB_NAME": db["name"], "DATA_DB_USER": db["user"], "DATA_DB_PASS": db["password"],
            "CELERY_BROKER_ENDPOINT": f"127.0.0.1:{redis_port}", "CELERY_REDIS_PASSWORD": "",
            "CELERY_REDIS_DB": "0", "CACHE_REDIS_DB": "1", "AWS_BUCKET_NAME": bucket,
            "STORAGE_EMULATOR_HOST": gcs_url, "GOOGLE_CLOUD_PROJECT": "studio-lab",
            "STATICFILES_DIR": str(static_dir), "DJANGO_LOG_FILE": str(log_file),
            "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def manage(python: Path, src: Path, env: dict, *args: str, timeout: float = 600.0) -> str:
    """``python contentcuration/manage.py ARGS`` as the Makefile runs it; its output, or LabError."""
    proc = subprocess.run([str(python), "manage.py", *args], cwd=src / "contentcuration", env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        last = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()][-1:]
        raise LabError(f"manage.py {' '.join(args[:1])} failed: {last[0] if last else proc.returncode}")
    return proc.stdout


def webpack_stats(src: Path, static_dir: Path) -> None:
    """Studio's pages render through django-webpack-loader: without a frontend build (the tarball has no
    Vue sources) they answer 500. Write the build's stats file and one empty bundle per page, as a
    ``pnpm build`` would, so the login page renders."""
    bundles = ("accounts", "administration", "channel_edit", "channel_list", "settings")
    build = src / "contentcuration" / "build"
    stats = build / "webpack-stats.json"
    chunks = {b: [{"name": f"{b}.js", "path": str(static_dir / "studio" / f"{b}.js")}] for b in bundles}
    (static_dir / "studio").mkdir(parents=True, exist_ok=True)
    for b in bundles:
        bundle = static_dir / "studio" / f"{b}.js"
        if not bundle.exists():
            bundle.write_text(f"/* {b}: no frontend build in the lab */\n")
    if not stats.exists():
        build.mkdir(parents=True, exist_ok=True)
        stats.write_text(json.dumps({"status": "done", "chunks": chunks}))
