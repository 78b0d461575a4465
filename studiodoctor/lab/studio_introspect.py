"""Run with Studio's own venv, from ``<src>/contentcuration``: print, as JSON, what Studio's code says about
the names studiodoctor relies on. Standalone (Django and Studio only, never studiodoctor): the tests compare
its answer with :mod:`studiodoctor.studio_facts`, so an upgrade of Studio that renames one turns a test red.

    cd STUDIO/contentcuration && VENV/bin/python .../studio_introspect.py PATH [PATH ...]

It reads, without any database or broker connection: every model's table and columns, the Celery tasks
registered on Studio's app and its Celery settings, which of the given URL paths resolve (and to which view),
the management commands, the browsers health checks may use, and the Cache-Control Studio's storage code
uploads channel databases with.
"""

import json
import os
import sys


def main(paths):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contentcuration.settings")
    sys.path.insert(0, os.getcwd())
    import django

    django.setup()
    from django.apps import apps
    from django.conf import settings
    from django.core.management import get_commands
    from django.urls import Resolver404, resolve

    tables = {}
    for model in apps.get_models(include_auto_created=True):
        tables[model._meta.db_table] = sorted(f.column for f in model._meta.concrete_fields)

    from contentcuration.celery import app
    import contentcuration.tasks  # noqa: F401  (registers the tasks)

    urls = {}
    for path in paths:
        try:
            match = resolve(path)
            urls[path] = f"{match.func.__module__}.{getattr(match.func, '__name__', '?')}"
        except Resolver404:
            urls[path] = None

    from contentcuration.utils import gcs_storage

    print(json.dumps({
        "tables": tables,
        "tasks": sorted(name for name in app.tasks if not name.startswith("celery.")),
        "celery": {k: v for k, v in settings.CELERY.items() if isinstance(v, (str, int, float, bool, dict))},
        "task_default_queue": app.conf.task_default_queue,
        "urls": urls,
        "commands": sorted(get_commands()),
        "health_check_browsers": list(settings.HEALTH_CHECK_BROWSERS),
        "databases_max_age": gcs_storage.CONTENT_DATABASES_MAX_AGE,
        "database_port": settings.DATABASES["default"]["PORT"],
    }, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
