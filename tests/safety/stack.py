"""The shape the safety tests point at a misbehaving server: every layer of the stack at one address.

``stack_sections(url)`` gives the profile sections of the layers that speak HTTP (Traefik's and
Kubernetes' APIs, CloudFlare's API under ``/client/v4``, the app, nginx, GCS); ``public_at`` maps the
public name there; the ``stack_at`` fixture (tests/safety/conftest.py) makes a Profile of them;
``write_profile`` writes sections as a TOML profile for the tests that run the command line on a file."""

from __future__ import annotations

import json
from pathlib import Path

HTTP_LAYERS = ("traefik", "kubernetes", "cloudflare", "app", "nginx", "gcs")
TOKEN = "not-a-real-token-123456"


def stack_sections(url: str, *, zone: str = "example.org", token: str = TOKEN) -> dict:
    """Every HTTP layer's section, each at ``url`` (http:// or https://)."""
    return {
        "traefik": {"api_url": url},
        "kubernetes": {"api_url": url, "namespace": "studio"},
        "cloudflare": {"api_url": url + "/client/v4", "api_token": token, "zone": zone},
        "app": {"url": url, "api_token": token},
        "nginx": {"url": url},
        "gcs": {"bucket": "content", "endpoint": url, "public_url": url},
    }


def public_at(host: str, address: str) -> dict:
    """The public name ``host`` (https and http) mapped to ``address`` (``http.resolve``, like curl
    --resolve): write_profile's ``http`` section, with ``public_urls=[f"https://{host}/"]``."""
    return {"resolve": {f"{host}:443": address, f"{host}:80": address}}


def _toml(value) -> str:
    if isinstance(value, dict):  # an inline table (http.resolve)
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)  # strings, numbers, booleans: JSON's spelling is TOML's


def write_profile(path: Path, name: str, sections: dict, **top) -> str:
    """``[profiles.NAME]`` with ``top`` keys, then one ``[profiles.NAME.LAYER]`` table per section."""
    lines = [f"[profiles.{name}]"] + [f"{k} = {_toml(v)}" for k, v in top.items()]
    for layer, keys in sections.items():
        lines += ["", f"[profiles.{name}.{layer}]"] + [f"{k} = {_toml(v)}" for k, v in keys.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)
