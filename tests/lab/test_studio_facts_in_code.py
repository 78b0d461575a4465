"""Every Studio fact the checks rely on (``studiodoctor.studio_facts`` and the Studio names the checks use),
verified against Studio's own code: its models, Celery app, URLconf and management commands as Django loads
them in Studio's venv (``studio_introspect``), and its ``docker/nginx`` and storage sources as text. A Studio
upgrade that renames one of them turns a test here red instead of a verdict wrong."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from checks.celery.common import DEFAULTS as CELERY_DEFAULTS
from studiodoctor import studio_facts as facts
from studiodoctor.lab import studio_schema
from studiodoctor.lab.servers.studio_app import PROBER_ENDPOINTS, SUPPORTED_UA

PATHS = (facts.HEALTHZ_PATH, facts.STEALTHZ_PATH, facts.LOGIN_PATH, facts.PUBLIC_CHANNELS_PATH,
         *(facts.PROBERS_PATH + name for name in PROBER_ENDPOINTS))


@pytest.fixture(scope="module")
def code(studio_src, studio_python):
    from studiodoctor.lab import studio_introspect

    proc = subprocess.run([str(studio_python), studio_introspect.__file__, *PATHS], capture_output=True, text=True,
                          cwd=studio_src / "contentcuration", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_table_and_column_the_checks_read_is_in_studios_models(code):
    for table, columns in facts.STUDIO_COLUMNS.items():
        assert table in code["tables"], f"Studio has no table {table}"
        missing = set(columns) - set(code["tables"][table])
        assert not missing, f"{table} lacks {sorted(missing)}"
    assert set(facts.STUDIO_TABLES) == set(facts.STUDIO_COLUMNS)


def test_change_has_no_timestamp_so_its_age_comes_from_the_task(code):
    """The fact that changed: our stand-in's Change had a ``created`` column; Studio's has none."""
    change = set(code["tables"][facts.CHANGE_TABLE])
    assert not change & {"created", "modified", "date_created", "timestamp"}
    assert "date_created" in code["tables"][facts.TASKRESULT_TABLE]
    assert "date_created" in code["tables"][facts.TASKMETA_TABLE]


def test_the_labs_stand_in_schema_has_no_column_studio_lacks(code, postgres_server):
    with postgres_server.connect() as conn:
        studio_schema.create_schema(conn)
        for table in studio_schema.TABLES:
            cols = {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns "
                                               "WHERE table_name = %s", (table,))}
            extra = cols - set(code["tables"][table])
            assert not extra, f"the stand-in's {table} has {sorted(extra)}, Studio's has not"


def test_task_names_and_celery_settings(code, studio_src):
    assert facts.APPLY_CHANNEL_CHANGES in code["tasks"] and facts.APPLY_USER_CHANGES in code["tasks"]
    assert code["task_default_queue"] == facts.CELERY_QUEUE == CELERY_DEFAULTS["queues"][0]
    assert code["celery"]["broker_transport_options"]["visibility_timeout"] == CELERY_DEFAULTS["visibility_timeout"]
    assert code["celery"]["result_backend"] == "django-db"   # results in django_celery_results_taskresult
    # the publish progress rows: create_change_tracker(..., "export-channel"), the staging tree's variant
    viewset = (studio_src / "contentcuration/contentcuration/viewsets/channel.py").read_text()
    tracked = set(re.findall(r'create_change_tracker\([^)]*?"([\w-]+)"\s*\)', viewset, re.S))
    assert set(facts.PUBLISH_TASK_NAMES) <= tracked   # (sync-channel is tracked too: not a publish)


def test_endpoints_resolve_to_studios_views(code):
    assert code["urls"][facts.HEALTHZ_PATH].endswith(".health")
    assert code["urls"][facts.STEALTHZ_PATH].endswith(".stealth")
    for path in PATHS:
        assert code["urls"][path], f"{path} does not resolve in Studio's URLconf"


def test_healthz_and_stealthz_bodies(studio_src):
    views = (studio_src / "contentcuration/contentcuration/views/base.py").read_text()
    assert re.search(r"def stealth\(request\):\s*return HttpResponse\(\"" + re.escape(facts.STEALTHZ_BODY), views)
    assert re.search(r"def health\(request\):\s*c = Channel\.objects\.first\(\)", views)


def test_repair_and_setup_commands_exist(code, studio_src):
    for name in (facts.RECONCILE_PUBLISHING, facts.RECONCILE_CHANGES, "setup", "loadconstants", "migrate"):
        assert name in code["commands"]
    assert "manage.py reconcile_publishing_status" in (studio_src / "Makefile").read_text()
    assert facts.MANAGE.endswith("contentcuration/manage.py")


def test_our_prober_user_agent_is_a_health_check_browser(code):
    assert "Studio-Internal-Prober" in code["health_check_browsers"]
    assert set(code["health_check_browsers"]) <= set(SUPPORTED_UA)


def test_database_cache_control_is_what_the_storage_code_uploads(code, studio_src):
    storage = (studio_src / "contentcuration/contentcuration/utils/gcs_storage.py").read_text()
    assert '"private, max-age={}, no-transform"' in storage
    # ...and on nothing else: storage/ objects carry no Cache-Control of their own (gcs.storage_cache_control)
    assert storage.count("cache_control =") == 1
    assert facts.DATABASE_CACHE_CONTROL == f"private, max-age={code['databases_max_age']}, no-transform"


def _nginx(studio_src: Path) -> str:
    root = studio_src / "docker" / "nginx"
    return "\n".join(p.read_text() for p in [root / "nginx.conf", *sorted((root / "includes/content").glob("*.conf"))])


def test_nginx_facts(studio_src):
    conf = (studio_src / "docker/nginx/nginx.conf").read_text()
    static = re.search(r"location\s+" + re.escape(facts.STATIC_PREFIX) + r"\s*\{([^}]*)\}", conf).group(1)
    assert "autoindex on" in static and re.search(r"expires\s+4h", static) and facts.STATIC_EXPIRES_S == 4 * 3600
    root = re.search(r"location\s+/\s*\{([^}]*)\}", conf).group(1)
    timeout = re.search(r"proxy_read_timeout\s+(\d+)s", root).group(1)
    assert float(timeout) == facts.STUDIO_PROXY_READ_TIMEOUT_S
    cache = (studio_src / "docker/nginx/includes/content/_cache.conf").read_text()
    assert f'add_header Cache-Control "{facts.STORAGE_CACHE_CONTROL}"' in cache
    assert f"max-age={facts.IMMUTABLE_MAX_AGE}" in facts.STORAGE_CACHE_CONTROL
    proxy = (studio_src / "docker/nginx/includes/content/_proxy.conf").read_text()
    assert re.search(r"limit_except\s+" + r"\s+".join(facts.CONTENT_ALLOWED_METHODS) + r"\s*\{\s*deny all;", proxy)
    content = (studio_src / "docker/nginx/includes/content/studio-content.conf").read_text()
    assert f"location ^~ {facts.CONTENT_STORAGE_PREFIX}" in content and f"location {facts.CONTENT_PREFIX} " in content
    assert "_cache.conf" in content.split(f"location {facts.CONTENT_PREFIX} ")[0]   # storage only
    assert "proxy_read_timeout 100s" in _nginx(studio_src)


def test_settings_read_the_environment_the_lab_sets(studio_src, code):
    from studiodoctor.lab import studio_source

    settings = (studio_src / "contentcuration/contentcuration/settings.py").read_text()
    env = studio_source.environment(db={"host": "h", "port": 1, "name": "n", "user": "u", "password": "p"},
                                    redis_port=1, bucket="b", gcs_url="http://g", static_dir=Path("/s"),
                                    log_file=Path("/l"))
    for name in env:
        if name.startswith(("DATA_DB_", "CELERY_", "CACHE_REDIS", "AWS_BUCKET", "STATICFILES", "DJANGO_LOG")):
            assert f'"{name}"' in settings, f"Studio's settings no longer read {name}"
    assert code["database_port"] == ""   # so PGPORT picks the lab's port
