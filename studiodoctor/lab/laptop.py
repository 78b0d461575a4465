"""The ``lab-laptop`` profile: what an on-call laptop holds and nothing more.

A laptop has the public URLs (and the public DNS, which the lab's resolver, ``http.resolve`` and CA
stand in for), a kubeconfig, and API tokens (CloudFlare, Sentry, New Relic, Postmark, GCS). It has no
address inside the cluster: no ``app.url``, ``nginx.url``, ``redis.url``, ``postgres.dsn``, Celery broker
or Traefik API, and no fact read off the lab's own servers (nginx's timeout, Deployment names, sample
paths the full profile names). The doctor must reach the rest through the Kubernetes API. It holds the
database's and Redis's credentials as on-call does (a password manager, not an address): the URLs of
``redis.port_forward_url`` and ``postgres.port_forward_dsn`` without their host, which a port-forward fills in.
"""

from __future__ import annotations

from pathlib import Path

# section -> the keys a laptop has (None: the whole section; a section not listed is dropped)
LAPTOP_KEYS: dict[str, tuple[str, ...] | None] = {
    "dns": None, "http": None, "cloudflare": None, "sentry": None, "newrelic": None, "email": None,
    "gcs": ("bucket", "endpoint", "public_url"),     # a public API, with the user's own credentials
    "traefik": ("entrypoint", "hostnames"),          # the origin's public address, not its API
    "kubernetes": ("namespace",),                    # plus the kubeconfig written beside the profile
    "app": ("api_token",),                           # a token the user holds, not an address
    "redis": ("client_protocol",),                   # how Studio's clients speak to it (RESP2), not where
}
# section -> (the full profile's endpoint key, the laptop's credentials key: the same URL without its host)
CREDENTIALS = {"redis": ("url", "port_forward_url"), "postgres": ("dsn", "port_forward_dsn")}


def without_host(url: str) -> str:
    """``postgresql://u:p@127.0.0.1:5432/db?x`` -> ``postgresql://u:p@/db?x``: credentials, no address."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    return (f"{parts.scheme}://" + (f"{userinfo}@" if userinfo else "") + parts.path
            + (f"?{parts.query}" if parts.query else ""))
TOP_KEYS = ("timeout", "public_urls")


def kubeconfig_text(api_url: str, token: str, namespace: str) -> str:
    """A kubeconfig for the lab's API stand-in, as ``gcloud container clusters get-credentials`` writes one
    (JSON is YAML)."""
    import json

    user = {"token": token} if token else {}
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "lab",
        "clusters": [{"name": "lab", "cluster": {"server": api_url}}],
        "users": [{"name": "oncall", "user": user}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "oncall", "namespace": namespace}}],
    }, indent=1)


def laptop_profile(full: dict, kubeconfig: Path) -> dict:
    """The laptop's share of the full lab profile; ``kubeconfig`` is written for the Kubernetes section."""
    data: dict = {k: full[k] for k in TOP_KEYS if k in full}
    for section, keys in LAPTOP_KEYS.items():
        got = full.get(section)
        if not isinstance(got, dict):
            continue
        kept = dict(got) if keys is None else {k: got[k] for k in keys if k in got}
        if kept:
            data[section] = kept
    for section, (endpoint, credentials) in CREDENTIALS.items():
        url = (full.get(section) or {}).get(endpoint)
        if url:
            data.setdefault(section, {})[credentials] = without_host(url)
    kube = full.get("kubernetes") or {}
    if kube.get("api_url"):
        kubeconfig.write_text(kubeconfig_text(kube["api_url"], kube.get("token", ""), kube.get("namespace", "")))
        data.setdefault("kubernetes", {})["kubeconfig"] = str(kubeconfig)
    return data
