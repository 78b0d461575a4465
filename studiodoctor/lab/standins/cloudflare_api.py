"""A CloudFlare v4 API stand-in: a small threaded HTTP server serving the documented JSON envelopes
(`success`, `errors`, `messages`, `result`, `result_info`) from a state file it rereads, so the lab
can flip settings while it runs. The real `cloudflare` SDK is pointed at it with
``Cloudflare(api_token=..., base_url="http://127.0.0.1:PORT/client/v4")``.

    python -m studiodoctor.lab.standins.cloudflare_api --port 8787 --state state.json

Endpoints (GET only, like the checks): ``/zones`` (``name``, ``page``, ``per_page``),
``/zones/{id}``, ``/zones/{id}/settings/{name}``, ``/zones/{id}/dns_records`` (``name``, ``type``;
real pagination that ends on an empty page, as the SDK's auto-pagination asks page+1 until empty),
``/zones/{id}/rulesets/phases/{phase}/entrypoint``, ``/zones/{id}/rulesets`` (summaries, cursor
pagination) and ``/zones/{id}/rulesets/{id}``, ``/user/tokens/verify``. A ruleset with
``"entrypoint": false`` is only found through the list; ``"answer_as_list": true`` answers the
entrypoint with ``[ruleset]``.
A wrong token gets 401; ``deny`` in the state (``["settings", "dns_records", "rulesets", "zones"]``
or ``["*"]``) gets CloudFlare's 403 "Authentication error" body for those resources.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from ..launcher import Launcher, free_port, write_json_atomic

PREFIX = "/client/v4"
NOW = "2026-11-01T00:00:00.000000Z"

DEFAULT_SETTINGS = {"ssl": "full", "always_use_https": "on", "min_tls_version": "1.2",
                    "development_mode": "off", "tls_1_3": "on", "cache_level": "aggressive",
                    "browser_cache_ttl": 14400}


STORAGE_RULE = '(starts_with(http.request.uri.path, "/content/storage/"))'
DATABASES_RULE = '(starts_with(http.request.uri.path, "/content/databases/"))'


def default_state(zone: str, hostnames: list[str], token: str, content: str = "127.0.0.1",
                  cache_rules: dict | None = None) -> dict:
    """A healthy zone: active, proxied records for each hostname, cache rules (in the
    http_request_cache_settings phase entrypoint) caching storage and bypassing databases; ``cache_rules``
    gives other expressions for them (``{"storage": expr, "databases": expr}``)."""
    rules = {"storage": STORAGE_RULE, "databases": DATABASES_RULE, **(cache_rules or {})}
    zone_id = "023e105f4ecef8ad9ca31a8372d0c353"
    return {
        "token": token,
        "deny": [],
        "zones": [{
            "id": zone_id, "name": zone, "status": "active", "paused": False, "type": "full",
            "development_mode": 0,
            "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
            "original_name_servers": ["dns1.registrar-servers.com", "dns2.registrar-servers.com"],
            "settings": dict(DEFAULT_SETTINGS),
            "dns_records": [
                {"id": f"rec{i:029d}", "name": h, "type": "A", "content": content, "proxied": True,
                 "proxiable": True, "ttl": 1} for i, h in enumerate(hostnames)],
            "rulesets": {"http_request_cache_settings": {
                "id": "cache0000000000000000000000000001", "name": "default", "kind": "zone",
                "phase": "http_request_cache_settings", "version": "3",
                "rules": [
                    {"id": "rule0000000000000000000000000001", "enabled": True, "action": "set_cache_settings",
                     "description": "cache content storage",
                     "expression": rules["storage"],
                     "action_parameters": {"cache": True}},
                    {"id": "rule0000000000000000000000000002", "enabled": True, "action": "set_cache_settings",
                     "description": "never cache channel databases",
                     "expression": rules["databases"],
                     "action_parameters": {"cache": False}},
                ]}},
        }],
    }


def _envelope(result: Any, status: int = 200, errors=None, result_info=None) -> tuple[int, dict]:
    body = {"success": not errors, "errors": errors or [], "messages": [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return status, body


def _page(items: list, query: dict) -> tuple[list, dict]:
    page = max(1, int(query.get("page", ["1"])[0]))
    per_page = max(1, min(5000, int(query.get("per_page", ["100"])[0])))
    chunk = items[(page - 1) * per_page: page * per_page]       # [] past the end: the SDK stops there
    info = {"page": page, "per_page": per_page, "count": len(chunk), "total_count": len(items),
            "total_pages": max(1, -(-len(items) // per_page))}
    return chunk, info


def _zone_view(zone: dict) -> dict:
    out = {k: v for k, v in zone.items() if k not in ("settings", "dns_records", "rulesets")}
    out.setdefault("account", {"id": "01a7362d577a6c3019a474fd6f485823", "name": "Learning Equality"})
    out.setdefault("owner", {"id": None, "type": "organization", "name": "Learning Equality"})
    out.setdefault("plan", {"id": "0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "name": "Free Website", "price": 0,
                            "currency": "USD", "frequency": "", "is_subscribed": False, "can_subscribe": False,
                            "legacy_id": "free", "legacy_discount": False, "externally_managed": False})
    out.setdefault("meta", {"step": 4, "custom_certificate_quota": 0, "page_rule_quota": 3,
                            "phishing_detected": False})
    for key in ("created_on", "modified_on", "activated_on"):
        out.setdefault(key, NOW)
    return out


def _forbidden() -> tuple[int, dict]:
    return _envelope(None, 403, errors=[{"code": 10000, "message": "Authentication error"}])


def _not_found(code: int, message: str) -> tuple[int, dict]:
    return _envelope(None, 404, errors=[{"code": code, "message": message}])


def _ruleset_view(ruleset: dict) -> dict:
    rules = [dict(r, version="1", last_updated=NOW, ref=r.get("id")) for r in ruleset.get("rules", [])]
    view = {k: v for k, v in ruleset.items() if k not in ("entrypoint", "answer_as_list")}
    return dict(view, rules=rules, last_updated=NOW)


def handle(state: dict, method: str, path: str, query: dict, auth: str) -> tuple[int, dict]:
    """One request -> (status, JSON body). Pure: tests may call it directly."""
    if method != "GET":
        return _envelope(None, 405, errors=[{"code": 10405, "message": "Method not allowed by the lab stand-in"}])
    if auth != f"Bearer {state.get('token', '')}":
        return _envelope(None, 401 if auth.startswith("Bearer ") else 400,
                         errors=[{"code": 9109 if auth.startswith("Bearer ") else 6003,
                                  "message": "Invalid access token" if auth.startswith("Bearer ")
                                  else "Invalid request headers"}])
    deny = set(state.get("deny") or [])
    if not path.startswith(PREFIX):
        return _not_found(7000, "No route for that URI")
    path = path[len(PREFIX):].rstrip("/")
    if path == "/user/tokens/verify":
        return _envelope({"id": "ed17574386854bf78a67040be0a770b0", "status": "active"})
    zones = state.get("zones", [])
    if path == "/zones":
        if deny & {"*", "zones"}:
            return _forbidden()
        name = query.get("name", [None])[0]
        items = [_zone_view(z) for z in zones if name in (None, z["name"])]
        chunk, info = _page(items, query)
        return _envelope(chunk, result_info=info)
    m = re.fullmatch(r"/zones/([^/]+)(/.*)?", path)
    if not m:
        return _not_found(7000, "No route for that URI")
    zone = next((z for z in zones if z["id"] == m.group(1)), None)
    rest = m.group(2) or ""
    if deny & {"*", "zones"}:
        return _forbidden()
    if zone is None:
        return _envelope(None, 400 if rest == "" else 404, errors=[{"code": 7003, "message":
                         "Could not route to /zones/" + m.group(1) + ", perhaps your object identifier is invalid?"}])
    if rest == "":
        return _envelope(_zone_view(zone))
    if (sm := re.fullmatch(r"/settings/([a-z0-9_]+)", rest)):
        if "settings" in deny:
            return _forbidden()
        name = sm.group(1)
        if name not in zone.get("settings", {}):
            return _not_found(1003, f"Invalid or missing zone setting: {name}")
        value = zone["settings"][name]
        result = {"id": name, "value": value, "editable": True, "modified_on": NOW}
        if name == "development_mode":
            result["time_remaining"] = 10800 if value == "on" else 0
        return _envelope(result)
    if rest == "/dns_records":
        if "dns_records" in deny:
            return _forbidden()
        records = zone.get("dns_records", [])
        name = query.get("name", [None])[0] or query.get("name.exact", [None])[0]
        rtype = query.get("type", [None])[0]
        items = [dict(r, zone_id=zone["id"], zone_name=zone["name"], created_on=NOW, modified_on=NOW,
                      locked=False, meta={"auto_added": False}, settings={}, tags=[], comment=None)
                 for r in records if name in (None, r["name"]) and rtype in (None, r["type"])]
        chunk, info = _page(items, query)
        return _envelope(chunk, result_info=info)
    if rest.startswith("/rulesets") and "rulesets" in deny:
        return _forbidden()
    rulesets = zone.get("rulesets") or {}
    if (rm := re.fullmatch(r"/rulesets/phases/([a-z_]+)/entrypoint", rest)):
        ruleset = rulesets.get(rm.group(1))
        if ruleset is None or ruleset.get("entrypoint") is False:
            return _not_found(10003, f"could not find entrypoint ruleset in the '{rm.group(1)}' phase")
        if ruleset.get("answer_as_list"):  # seen from a proxy in front of the API: [ruleset] instead of ruleset
            return _envelope([_ruleset_view(ruleset)])
        return _envelope(_ruleset_view(ruleset))
    if rest == "/rulesets":
        # List zone rulesets: summaries without rules, cursor-paginated (result_info.cursor)
        items = [{k: v for k, v in _ruleset_view(r).items() if k != "rules"} for r in rulesets.values()]
        per_page = max(1, int(query.get("per_page", ["50"])[0]))
        start = int(query.get("cursor", ["0"])[0] or 0)
        chunk = items[start:start + per_page]
        info = {"count": len(chunk), "per_page": per_page}
        if start + per_page < len(items):
            info["cursor"] = str(start + per_page)
        return _envelope(chunk, result_info=info)
    if (rm := re.fullmatch(r"/rulesets/([a-z0-9]+)", rest)):
        ruleset = next((r for r in rulesets.values() if r.get("id") == rm.group(1)), None)
        if ruleset is None:
            return _not_found(10001, "could not find ruleset")
        return _envelope(_ruleset_view(ruleset))
    return _not_found(7000, "No route for that URI")


def serve(port: int, state_path: Path, address: str = "127.0.0.1") -> None:
    from .saas_stub import serve_json

    def answer(state, method, path, query, headers, body):
        return handle(state, method, path, query, headers.get("authorization", ""))

    serve_json(answer, "cloudflare_api", port, state_path, address, headers={"cf-ray": "8e00000000000000-LAB"},
               suffix=PREFIX)


class CloudflareAPI(Launcher):
    """The lab's CloudFlare API. Faults (all applied by rewriting the state file, reverted with the
    inverse call): ``set_setting("ssl", "flexible")``, ``set_setting("always_use_https", "off")``,
    ``set_setting("min_tls_version", "1.0")``, ``set_setting("development_mode", "on")``,
    ``set_record(name, proxied=False)``, ``delete_record(name)`` / ``add_record(...)``,
    ``set_zone(status="pending"|paused=True)``, ``set_cache_rule(cache_databases=True)``,
    ``set_deny(["settings"])`` (403 for the token)."""

    kind = "cloudflare_api"

    def __init__(self, root, port: int = 0, zone: str = "localtest", hostnames: list | None = None,
                 token: str = "lab-cloudflare-token", record_content: str = "127.0.0.1",
                 cache_rules: dict | None = None, **options):
        super().__init__(root, port, zone=zone, hostnames=list(hostnames or []), token=token,
                         record_content=record_content, cache_rules=dict(cache_rules or {}), **options)
        self.cache_rules = self.options["cache_rules"]
        self.zone, self.hostnames, self.token = zone, list(hostnames or []), token
        self.record_content = record_content
        self.state_file = self.dir / "state.json"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    # state editing ------------------------------------------------------------
    @property
    def method_logs(self) -> list[Path]:
        from ..methodlog import MethodLog

        return [MethodLog.beside(self.state_file, "cloudflare_api").path]  # see saas_stub.serve_json

    def read_state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def write_state(self, state: dict) -> None:
        write_json_atomic(self.state_file, state)

    def _edit_zone(self, fn) -> None:
        state = self.read_state()
        fn(state["zones"][0])
        self.write_state(state)

    def set_setting(self, name: str, value) -> None:
        self._edit_zone(lambda z: z["settings"].__setitem__(name, value))

    def set_zone(self, **fields) -> None:
        self._edit_zone(lambda z: z.update(fields))

    def set_record(self, name: str, **fields) -> None:
        def edit(z):
            for rec in z["dns_records"]:
                if rec["name"] == name:
                    rec.update(fields)
        self._edit_zone(edit)

    def delete_record(self, name: str) -> None:
        self._edit_zone(lambda z: z.__setitem__("dns_records", [r for r in z["dns_records"] if r["name"] != name]))

    def add_record(self, name: str, rtype: str = "A", content: str = "", proxied: bool = True) -> None:
        self._edit_zone(lambda z: z["dns_records"].append(
            {"id": f"rec{abs(hash(name)) % 10**29:029d}", "name": name, "type": rtype,
             "content": content or self.record_content, "proxied": proxied, "proxiable": True, "ttl": 1}))

    def set_cache_rule(self, cache_databases: bool) -> None:
        """cache_databases=True: the databases rule turns into "eligible for cache" (a fault)."""
        def edit(z):
            for rule in z["rulesets"]["http_request_cache_settings"]["rules"]:
                if rule["expression"] == self.cache_rules.get("databases", DATABASES_RULE):
                    rule["action_parameters"] = {"cache": bool(cache_databases)}
        self._edit_zone(edit)

    def set_deny(self, kinds: list[str]) -> None:
        state = self.read_state()
        state["deny"] = list(kinds)
        self.write_state(state)

    def reset(self) -> None:
        self.write_state(default_state(self.zone, self.hostnames, self.token, self.record_content, self.cache_rules))

    # lifecycle ------------------------------------------------------------------
    def command(self) -> list[str]:
        return [sys.executable, "-m", "studiodoctor.lab.standins.cloudflare_api", "--port", str(self.port),
                "--state", str(self.state_file)]

    def start(self, timeout: float = 15.0) -> "CloudflareAPI":
        if not self.state_file.exists():
            self.reset()
        return super().start(timeout)

    def profile(self) -> dict:
        return {"cloudflare": {"api_url": self.api_url, "api_token": self.token, "zone": self.zone}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--state", required=True, type=Path)
    args = parser.parse_args(argv)
    serve(args.port or free_port(), args.state, args.address)
    return 0


if __name__ == "__main__":
    sys.exit(main())
