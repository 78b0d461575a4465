"""CloudFlare: ``/user/tokens/verify``, the token's permission groups (``/user/tokens/<id>``) when the
token may read them, else one GET per declared permission (403 = not granted)."""

from __future__ import annotations

import json
from urllib.parse import quote

from ..model import Reason, error
from .common import pf, declared, entry, verdict


# a GET that needs exactly the declared permission (403 without it)
CF_PROBES = {"Zone:Read": "/zones/{zone}", "Zone Settings:Read": "/zones/{zone}/settings/ssl",
             "DNS:Read": "/zones/{zone}/dns_records?per_page=1",
             "Cache Rules:Read": "/zones/{zone}/rulesets/phases/http_request_cache_settings/entrypoint"}


@pf("cloudflare.preflight", title="CloudFlare: the API token and its permission groups",
    needs=("cloudflare.api_token", "cloudflare.zone"))
def preflight_cloudflare(ctx):
    """The token's verify answer, then its permission groups (or one read per declared permission)."""
    from ..probes.http import describe_error

    import urllib.error
    import urllib.request

    cfg = ctx.config
    api = str(cfg.get("api_url") or "https://api.cloudflare.com/client/v4").rstrip("/")
    token = str(cfg.get("api_token"))

    def get(path: str) -> tuple[int, dict]:
        req = urllib.request.Request(api + path, headers={"Authorization": f"Bearer {token}",
                                                          "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=max(0.5, ctx.timeout(margin=0.2))) as resp:
                return resp.status, json.loads(resp.read(1 << 20) or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read(1 << 20) or b"{}")
            except ValueError:
                return exc.code, {}

    try:
        status, body = get("/user/tokens/verify")
    except (OSError, ValueError) as exc:
        return error(f"cloudflare: no readable answer from {api}: {describe_error(exc)[1]}", reason=Reason.UNEXPECTED)
    result = body.get("result") if isinstance(body, dict) else None
    if status != 200 or not isinstance(result, dict):
        return error(f"cloudflare: /user/tokens/verify answered HTTP {status}: the token is not valid",
                     reason=Reason.AUTH, hint="create a token (My Profile, API Tokens) and set cloudflare.api_token")
    token_id, token_status = str(result.get("id", "?")), str(result.get("status", "?"))
    identity = f"token id {token_id} ({token_status}, /user/tokens/verify)"
    groups: list[str] | None = None
    try:
        st, details = get(f"/user/tokens/{quote(token_id)}")
        if st == 200 and isinstance(details, dict) and isinstance(details.get("result"), dict):
            groups = [str(g.get("name")) for p in details["result"].get("policies") or [] if isinstance(p, dict)
                      for g in p.get("permission_groups") or [] if isinstance(g, dict)]
    except (OSError, ValueError, TypeError, AttributeError):  # no answer, or not the documented shape
        groups = None
    zone_name = str(cfg.get("zone"))
    entries, missing = [], []
    zone_id = None
    for perm, ids in declared(layers={"cloudflare"}).items():
        if perm not in CF_PROBES:
            continue
        if groups is not None:
            name = perm.replace(":", " ")  # "Zone Settings:Read" is the group "Zone Settings Read"
            has = any(g.lower() == name.lower() for g in groups)
            entries.append(entry(perm, ids, has, "the token's permission groups"))
        else:
            try:
                if zone_id is None:
                    st, z = get(f"/zones?name={quote(zone_name)}")
                    items = z.get("result") if isinstance(z, dict) else None
                    first = items[0] if st == 200 and isinstance(items, list) and items else None
                    zone_id = str(first.get("id") or "") if isinstance(first, dict) else ""
                if not zone_id:
                    entries.append(entry(perm, ids, False if perm == "Zone:Read" else None, "GET /zones?name=",
                                          detail=f"zone {zone_name} not visible to this token"))
                else:
                    st, _ = get(CF_PROBES[perm].format(zone=zone_id))
                    entries.append(entry(perm, ids, None if st not in (200, 403, 404) else st != 403,
                                          f"GET {CF_PROBES[perm].split('?')[0]}", detail=f"HTTP {st}"))
            except (OSError, ValueError) as exc:
                entries.append(entry(perm, ids, None, "GET", detail=describe_error(exc)[1]))
        if entries[-1]["granted"] is False:
            missing.append(perm)
    lines = ([f"edit the token (My Profile > API Tokens > {token_id}): add Zone permissions "
              + ", ".join(missing) + f" on zone {zone_name}"] if missing else [])
    note = "" if groups is not None else "permission groups not readable by this token: each probed with a read"
    return verdict("cloudflare", identity, entries, lines, note=note, evidence={"permission_groups": groups})
