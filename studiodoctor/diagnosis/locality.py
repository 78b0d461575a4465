"""Where a result's endpoints lie: on this machine, or beyond it (for "is it me?", see ``runbook``).

When this machine cannot reach a control outside Studio (layer `local`), a failure to reach something
beyond this machine is explained by that, but a refused connection to a port-forward on 127.0.0.1 is not:
the local network going down does not stop a process on loopback. A result's endpoints are read from its
evidence (``address``, ``url``, ``urls`` and URL-shaped values), a name mapped by ``http.resolve`` counts
where it is mapped to.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.I)
_ADDRESS_KEYS = ("address", "url", "urls", "endpoint", "api_url", "base")


def _hosts_in(value: Any, key: str = "", depth: int = 0) -> set[str]:
    """Hosts named by URL-shaped strings anywhere in ``value``, and by ``host:port`` under address keys."""
    out: set[str] = set()
    if depth > 6:
        return out
    if isinstance(value, dict):
        for k, v in value.items():
            out |= _hosts_in(v, str(k), depth + 1)
            if "://" in str(k):
                out |= _hosts_in(str(k), "", depth + 1)
    elif isinstance(value, (list, tuple)):
        for v in value[:50]:
            out |= _hosts_in(v, key, depth + 1)
    elif isinstance(value, str):
        for url in _URL.findall(value):
            host = urlsplit(url).hostname
            if host:
                out.add(host)
        if key in _ADDRESS_KEYS and "://" not in value and ":" in value:
            host = value.rsplit(":", 1)[0].strip("[]")
            if host:
                out.add(host)
    return out


# the profile's sections a layer reaches, beyond its own (`trace` goes through every hop)
_LAYER_SECTIONS = {"edge": ("public_urls",), "trace": ("public_urls", "traefik", "nginx", "app"),
                   "celery": ("celery", "redis"), "cloudflare": ("cloudflare", "public_urls")}


def endpoints(result, profile=None) -> set[str]:
    """The hosts a result's evidence says it tried to reach, and those its layer's section of the profile
    names (URLs, DSNs)."""
    hosts = _hosts_in(result.evidence)
    if profile is not None:
        for name in _LAYER_SECTIONS.get(result.layer, (result.layer,)):
            hosts |= _hosts_in(profile.value(name), "address")
    return hosts


def on_this_machine(host: str, profile=None) -> bool:
    """``host`` is loopback (or ``localhost``), or a name ``http.resolve`` maps to loopback."""
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    mapped = (profile.section("http").get("resolve") or {}) if profile is not None else {}
    targets = [addr for name, addr in mapped.items() if name.rsplit(":", 1)[0] == host]
    return bool(targets) and all(on_this_machine(t.rsplit(":", 1)[0].strip("[]")) for t in targets)


def beyond_this_machine(result, profile=None) -> bool:
    """True when the result reached (or tried) something beyond this machine, or says nothing of where
    it went (then this machine's network cannot be ruled out); False when every endpoint is on loopback."""
    hosts = endpoints(result, profile)
    return not hosts or not all(on_this_machine(h, profile) for h in hosts)
