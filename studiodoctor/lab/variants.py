"""The lab's variants, as data: how each Studio-like deployment differs from the others. Launchers and
the lab manager read their part from here; nothing else in the lab asks which variant it runs.

``default`` is the lab the project grew up with (Traefik, metrics, Studio's own names). ``other`` differs
the way real deployments differ from each other: other static files and pages, other namespace,
deployment names, labels and container names, ingress-nginx instead of Traefik, no metrics API, a
Redis without RESP3 (HELLO disabled, like Redis < 6), PostgreSQL that only accepts TLS (verify-full
against the lab CA), other CloudFlare cache rules, another bucket name, and a profile that gives only
the contract's keys (no sample paths or deployment names: the checks must discover them).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

_PNG_1PX = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
_SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"><circle cx="8" cy="8" r="7"/></svg>\n'

_DEFAULT_LOGIN = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Kolibri Studio</title></head>
<body><div id="app">Sign in to Kolibri Studio</div><form method="post" action="/en/accounts/login/">
<input type="hidden" name="csrfmiddlewaretoken" value="lab"><input name="username"><input name="password" type="password">
</form></body></html>
"""

_OTHER_LOGIN = """<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>Atelier de contenus</title>
<link rel="icon" href="/static/assets/favicon.2b7e1d.svg">
<link rel="stylesheet" href="/static/bundles/app.8c1e2f90.css">
</head><body><main id="root" data-locale="fr">Connexion</main>
<form method="post" action="/fr/accounts/login/"><input type="hidden" name="csrfmiddlewaretoken" value="x">
<input name="username"><input name="password" type="password"></form>
<script src="/static/bundles/runtime.4d2a.js"></script><script src="/static/bundles/app.8c1e2f90.js"></script>
</body></html>
"""


def _k8s_labels(name: str, component: str, instance: str) -> dict[str, str]:
    """The recommended app.kubernetes.io labels (what Helm charts other than Studio's put on pods)."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component,
            "app.kubernetes.io/instance": instance}


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    hostname: str
    zone: str
    # Kubernetes: namespace, deployment names, the labels of each tier's pods, container names
    namespace: str
    deployments: dict[str, str]                 # tier -> Deployment name (frontend, workers)
    labels: dict[str, dict[str, str]]           # tier -> pod/deployment labels (frontend, workers, ingress)
    containers: dict[str, str]                  # app, proxy, worker
    ingress: str                                # "traefik" or "ingress-nginx": the lab server and the API objects
    ingress_namespace: str                      # where the controller's pods run
    metrics: bool                               # metrics.k8s.io served (False: 404)
    # servers
    redis_disabled_commands: tuple[str, ...]
    postgres_tls: bool                          # hostssl only, DSN with sslmode=verify-full and the lab CA
    bucket: str
    static_files: dict[str, bytes]              # collectstatic's output, relative to /static/
    favicon: str                                # one of static_files
    login_html: str                             # what the app answers on its login page
    channel_name: str                           # the first channel (/healthz answers it)
    databases_rule: str                         # CloudFlare cache-rule expression that bypasses databases
    storage_rule: str                           # ... and the one that caches content storage
    # the profile: the default lab also names its samples and deployments (overrides a user may set)
    profile_overrides: bool = False
    skip_faults: dict[str, str] = field(default_factory=dict)   # fault -> why it does not apply here
    fault_layers: dict[str, str] = field(default_factory=dict)  # fault -> the layer that shows it here
    # True: Studio's own backend from a source tree (studiodoctor.lab.studio_source) instead of the stand-in app
    runs_studio: bool = False


# The default lab's Kubernetes namespace is standins.kubernetes.studio_state() (its tests build on it); the fields
# below describe what that state holds.
DEFAULT = Variant(
    name="default",
    description="Studio as this project's lab always ran it: Traefik, metrics API, Studio's names",
    hostname="studio.localtest", zone="localtest",
    namespace="studio",
    deployments={"frontend": "master-studio", "workers": "master-studio-workers"},
    labels={"frontend": {"app": "master-studio", "tier": "frontend"},
            "workers": {"app": "master-studio-workers", "tier": "workers"},
            "ingress": {"app": "traefik", "app.kubernetes.io/name": "traefik", "release": "traefik"}},
    containers={"app": "app", "proxy": "nginx-proxy", "worker": "worker"},
    ingress="traefik", ingress_namespace="kube-system", metrics=True,
    redis_disabled_commands=(), postgres_tls=False, bucket="studio-content",
    static_files={"img/kolibri_placeholder.png": _PNG_1PX,
                  "css/export.css": b"body { font-family: sans-serif; }\n" * 40,
                  "studio/js/base.js": b"/* Kolibri Studio lab bundle */\nwindow.studio = {};\n" * 40},
    favicon="img/kolibri_placeholder.png",
    login_html=_DEFAULT_LOGIN,
    channel_name="Studio lab channel",
    databases_rule='(starts_with(http.request.uri.path, "/content/databases/"))',
    storage_rule='(starts_with(http.request.uri.path, "/content/storage/"))',
    profile_overrides=True,
)

OTHER = Variant(
    name="other",
    description="another Studio-like deployment: ingress-nginx, no metrics API, Redis without RESP3, "
                "PostgreSQL over TLS, other names, labels, files and pages",
    hostname="atelier.localtest", zone="localtest",
    namespace="contentworkshop",
    deployments={"frontend": "cw-web", "workers": "cw-celery"},
    labels={"frontend": _k8s_labels("contentworkshop", "web", "prod"),
            "workers": _k8s_labels("contentworkshop", "celery", "prod"),
            "ingress": _k8s_labels("ingress-nginx", "controller", "ingress-nginx")},
    containers={"app": "django", "proxy": "nginx", "worker": "celery"},
    ingress="ingress-nginx", ingress_namespace="ingress-nginx", metrics=False,
    redis_disabled_commands=("HELLO",), postgres_tls=True, bucket="cw-content-prod",
    static_files={"assets/favicon.2b7e1d.svg": _SVG,
                  "bundles/app.8c1e2f90.css": b":root { --accent: #996; }\nmain { margin: 0 auto; }\n" * 30,
                  "bundles/app.8c1e2f90.js": b"/* app bundle */\n(function(){window.cw={};})();\n" * 30,
                  "bundles/runtime.4d2a.js": b"/* webpack runtime */\n" * 20},
    favicon="assets/favicon.2b7e1d.svg",
    login_html=_OTHER_LOGIN,
    channel_name="Atelier: premier canal",
    databases_rule='(http.request.uri.path matches "^/content/databases/.*\\\\.sqlite3$")',
    storage_rule='(http.request.uri.path wildcard "/content/storage/*")',
    # the controller's pods OOMKilled: ingress-nginx is no layer of its own, kubernetes.ingress_pods reads them
    fault_layers={"traefik-oom": "kubernetes"},
)

_STAND_IN_SWITCH = ("Studio's own code runs here: this fault flips a switch of the lab's stand-in app or nginx "
                    "model, and Studio is broken only through its processes and data")
STUDIO = Variant(
    name="studio",
    description="Studio's own backend from a source tree (--studio-src): its Django app under gunicorn and its "
                "Celery worker as its Makefile runs them, its docker/nginx configuration, its migrated schema "
                "and `manage.py setup` data",
    hostname="studio.localtest", zone="localtest",
    namespace="studio",
    deployments={"frontend": "studio-app", "workers": "studio-celery"},
    labels={"frontend": {"app": "studio-app", "tier": "frontend"},
            "workers": {"app": "studio-celery", "tier": "workers"},
            "ingress": {"app": "traefik", "app.kubernetes.io/name": "traefik", "release": "traefik"}},
    containers={"app": "app", "proxy": "nginx-proxy", "worker": "worker"},
    ingress="traefik", ingress_namespace="kube-system", metrics=True,
    redis_disabled_commands=(), postgres_tls=False, bucket="studio-content",
    static_files={}, favicon="", login_html="", channel_name="",
    databases_rule='(starts_with(http.request.uri.path, "/content/databases/"))',
    storage_rule='(starts_with(http.request.uri.path, "/content/storage/"))',
    runs_studio=True,
    skip_faults={**{name: _STAND_IN_SWITCH for name in (
        "app-slow", "pod-500", "app-intermittent", "app-slow-tail", "nginx-databases-public",
        "nginx-storage-headers", "static-missing", "queue-backlog", "workers-saturated", "stuck-publish")},
        "bucket-missing": "its fix re-seeds the stand-in's objects, while Studio's bucket holds what its own "
                          "publishes wrote"},
)

VARIANTS: dict[str, Variant] = {v.name: v for v in (DEFAULT, OTHER, STUDIO)}


def get(name: str | None) -> Variant:
    from .launcher import LabError

    if not name:
        return DEFAULT
    if name not in VARIANTS:
        raise LabError(f"unknown lab variant {name!r} (known: {', '.join(VARIANTS)})")
    return VARIANTS[name]
