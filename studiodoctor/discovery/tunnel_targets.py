"""Which pod a port-forward goes to, per layer, found on the live cluster by what its pods run (never by a
name): the Redis server (an image ``redis``/``bitnami/redis``; a master before replicas), the Cloud SQL
proxy (``cloud_sql_proxy``/``cloud-sql-proxy`` in its command), Traefik (an image ``traefik``, in the
Traefik namespace). Only Running and Ready pods; the port is the container's port of that role (its name,
else the well-known number, else the proxy's ``tcp:...:PORT``/Traefik's ``--entrypoints.traefik.address``).

``find_target(ctx, key)`` answers a ``Target`` or raises ``NoTarget`` (why, and what would open a way).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..model import READ_ONLY, Command


@dataclass(frozen=True)
class Target:
    key: str            # the profile key the tunnel stands in for (redis.url, postgres.dsn, traefik.api_url)
    namespace: str
    pod: str
    port: int
    found: str          # how it was told: "runs redis (image docker.io/bitnami/redis:4.0.14)"

    @property
    def label(self) -> str:
        return f"pod {self.namespace}/{self.pod}:{self.port}"


class NoTarget(Exception):
    def __init__(self, why: str, hint: str, commands=()):
        super().__init__(why)
        self.why, self.hint, self.commands = why, hint, list(commands)


def _image_base(image: str) -> str:
    return image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0].lower()


def _runs(c: dict) -> str:
    return " ".join(str(x) for x in [*(c.get("command") or []), *(c.get("args") or [])]).lower()


def _is_redis(c: dict) -> bool:
    return _image_base(str(c.get("image", ""))) in ("redis", "redis-stack-server", "valkey") or \
        "redis-server" in _runs(c)


def _is_cloudsql(c: dict) -> bool:
    text = f"{c.get('image', '')} {_runs(c)}".lower()
    return "cloud_sql_proxy" in text or "cloud-sql-proxy" in text


def _is_traefik(c: dict) -> bool:
    return _image_base(str(c.get("image", ""))) == "traefik"


def _port(c: dict, names: tuple[str, ...], number: int, pattern: str = "") -> int | None:
    ports = c.get("ports") or []
    for p in ports:
        if p.get("name") in names and p.get("containerPort"):
            return int(p["containerPort"])
    if pattern:
        found = re.search(pattern, _runs(c))
        if found:
            return int(found.group(1))
    if any(p.get("containerPort") == number for p in ports):
        return number
    return number if not ports else int(ports[0]["containerPort"])


# key -> (layer's word, the container test, port names, well-known port, a pattern of the port in its command)
ROLES = {
    "redis.url": ("Redis", _is_redis, ("redis", "tcp-redis"), 6379, r"--port[= ](\d+)"),
    "postgres.dsn": ("the Cloud SQL proxy", _is_cloudsql, ("postgres", "postgresql", "tcp"), 5432,
                     r"=tcp:(?:[0-9.]+:)?(\d+)"),
    "traefik.api_url": ("Traefik", _is_traefik, ("traefik",), 9000, r"--entrypoints\.traefik\.address=[^ ]*:(\d+)"),
}


def _ready(p: dict) -> bool:
    st = p.get("status") or {}
    return st.get("phase") == "Running" and any(c.get("type") == "Ready" and c.get("status") == "True"
                                                for c in st.get("conditions") or [])


def _master_first(p: dict) -> tuple:
    labels = (p.get("metadata") or {}).get("labels") or {}
    master = "master" in (labels.get("role"), labels.get("app.kubernetes.io/component"))
    return (not master, (p.get("metadata") or {}).get("name") or "")


def find_target(ctx, key: str) -> Target:
    """The pod and port a port-forward standing in for ``key`` goes to (NoTarget: why not, and the way)."""
    from studiodoctor.backends import kubernetes as kc

    what, test, names, number, pattern = ROLES[key]
    ns = kc.traefik_namespace(ctx) if key == "traefik.api_url" else kc.namespace(ctx)
    listing = kc.list_objects(ctx, "pods", ns)
    if listing.status == "forbidden":
        raise NoTarget(f"cannot look for {what}'s pod: listing pods in {ns} is forbidden",
                       f"Grant {kc.rbac_rule('pods', ns)}.", [Command(kc.can_i(ctx, "pods", ns), READ_ONLY)])
    if not listing.ok:
        raise NoTarget(f"cannot look for {what}'s pod: listing pods in {ns}: {listing.status} "
                       f"{listing.detail}".strip(), "Check the Kubernetes layer's own results.")
    found = []
    for p in listing.items:
        if not isinstance(p, dict):
            continue
        for c in ((p.get("spec") or {}).get("containers") or []):
            if isinstance(c, dict) and test(c):
                found.append((p, c))
                break
    ready = sorted(((p, c) for p, c in found if _ready(p)), key=lambda pc: _master_first(pc[0]))
    if not ready:
        seen = ", ".join(sorted((p.get("metadata") or {}).get("name", "") for p, _ in found)) or "none"
        raise NoTarget(f"no Ready pod runs {what} in namespace {ns} (pods that run it: {seen})",
                       f"Check {what}'s pods (`kubectl get pods -n {ns}`), or give its address in the profile.",
                       [Command(kc.kubectl(ctx, "get pods -o wide", ns), READ_ONLY)])
    p, c = ready[0]
    port = _port(c, names, number, pattern)
    return Target(key, ns, (p.get("metadata") or {}).get("name", ""), int(port or number),
                  f"runs {what} (container {c.get('name')}, image {c.get('image')})")
