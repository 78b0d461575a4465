"""What the cloudflare checks share: the check ids, the API read as plain JSON over HTTP (the engine's
probe: the bearer token, the check's deadline, no SDK import), calls whose errors become a ``Stop`` (403
names the permission), the zone's id and settings, and the runbook's curl lines."""

from __future__ import annotations

from studiodoctor.model import MUTATING, Command, Reason, Stop, error, guard, unreachable


# imported by the runner before any check starts (see studiodoctor.runner.preload); the API is read as
# plain JSON over HTTP (see _get), so the official SDK is not imported
SDK_IMPORTS = ("httpx",)

ZONE = "cloudflare.zone"
DEVELOPMENT_MODE = "cloudflare.development_mode"
SSL_MODE = "cloudflare.ssl_mode"
ALWAYS_HTTPS = "cloudflare.always_use_https"
MIN_TLS = "cloudflare.min_tls_version"
DNS_RECORDS = "cloudflare.dns_records"
CACHE_RULES = "cloudflare.cache_rules"

NEEDS = ("cloudflare.api_token", "cloudflare.zone")
TOKEN_ENV = "$CLOUDFLARE_API_TOKEN"


API_URL = "https://api.cloudflare.com/client/v4"


class _APIStatus(Exception):
    """A non-2xx answer of the API: its status and parsed body (the v4 envelope's ``errors``)."""

    def __init__(self, status_code: int, body):
        super().__init__(f"Error code: {status_code} - {body}"[:300])
        self.status_code, self.body = status_code, body


def _get(ctx, path: str, params: dict | None = None):
    """GET a v4 path with the API token: the parsed JSON (or the text of a body that is not JSON).

    Plain HTTP through the engine's probe (what the official SDK's client sends for a GET: the bearer
    token, within the check's deadline; like every probe, one retry after a reset), without importing
    the SDK: its client and typed resources cost ~0.4 s of CPU per run for reads the checks take as
    plain JSON anyway. The request's network time is the check's ``network_ms``."""
    from urllib.parse import urlencode

    from studiodoctor.probes import http as httpprobe

    cfg = ctx.section("cloudflare")
    url = (cfg.get("api_url") or API_URL).rstrip("/") + path
    if params:
        url += "?" + urlencode(params)
    resp = httpprobe.request(ctx, "GET", url, resolve=False, headers={
        "Authorization": f"Bearer {cfg['api_token']}", "Accept": "application/json"})
    try:
        body = resp.json()
    except ValueError:
        body = resp.text
    if not 200 <= resp.status_code < 300:
        raise _APIStatus(resp.status_code, body)
    return body


def _curl(ctx, path: str) -> Command:
    api = (ctx.section("cloudflare").get("api_url") or "https://api.cloudflare.com/client/v4").rstrip("/")
    return Command(f'curl -s -H "Authorization: Bearer {TOKEN_ENV}" {api}{path}')


def _patch(ctx, path: str, value: str) -> Command:
    api = (ctx.section("cloudflare").get("api_url") or "https://api.cloudflare.com/client/v4").rstrip("/")
    return Command(f'curl -s -X PATCH -H "Authorization: Bearer {TOKEN_ENV}" -H "Content-Type: application/json" '
                   f"{api}{path} -d '{{\"value\":\"{value}\"}}'", MUTATING, "changes the zone setting")


def _call(ctx, what: str, permission: str, fn):
    """Run one API read, ``fn()``; its failures become a Result in Stop (403 names the permission)."""
    from studiodoctor.probes.http import describe_error

    api = ctx.section("cloudflare").get("api_url") or "api.cloudflare.com"
    try:
        return fn()
    except _APIStatus as exc:
        if exc.status_code == 403:
            raise Stop(error(f"403 reading {what}: the API token lacks the \"{permission}\" permission",
                             evidence={"status": 403, "errors": _errors(exc)}, reason=Reason.FORBIDDEN,
                             hint=f"Give the token {permission} on the zone (CloudFlare dashboard, My Profile, "
                                  "API Tokens, edit, Permissions), or use a token that has it."))
        if exc.status_code == 401:
            raise Stop(error(f"401 reading {what}: the API token was rejected (invalid, expired or revoked)",
                             evidence={"status": 401, "errors": _errors(exc)}, reason=Reason.AUTH,
                             hint="Create a new API token and set it in cloudflare.api_token ($CLOUDFLARE_API_TOKEN).",
                             commands=[_curl(ctx, "/user/tokens/verify")]))
        if exc.status_code == 400:
            raise Stop(error(f"400 reading {what}: {_first_error(exc)}",
                             evidence={"status": 400, "errors": _errors(exc)}, reason=Reason.AUTH,
                             hint="A malformed token is answered 400: check cloudflare.api_token."))
        raise Stop(error(f"CloudFlare API answered {exc.status_code} reading {what}: {_first_error(exc)}",
                         evidence={"status": exc.status_code, "errors": _errors(exc)}))
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        # a 2xx whose body is not the API's JSON (an HTML page, an empty body, another shape)
        first = (str(exc).strip().splitlines() or [""])[0]
        raise Stop(error(f"unreadable answer from the CloudFlare API reading {what} "
                         f"({type(exc).__name__}: {first})"[:300], evidence={"api_url": api}))
    except Stop:
        raise
    except Exception as exc:  # httpx's errors: refused, timed out, reset, TLS
        timed_out, text = describe_error(exc)
        raise Stop(unreachable("CloudFlare API", api, text, timed_out=timed_out))


def _raw(ctx, what: str, permission: str, path: str, params: dict | None = None):
    """GET a v4 path, returning the JSON envelope as plain data (no typed model: a shape we do not
    expect must become an error naming it, not an AttributeError)."""
    body = _call(ctx, what, permission, lambda: _get(ctx, path, params))
    if not isinstance(body, dict) or "result" not in body:
        raise Stop(error(f"unexpected answer reading {what}: {type(body).__name__} without a `result` "
                         f"(not a CloudFlare v4 envelope)", reason=Reason.UNEXPECTED, evidence={"path": path},
                         commands=[_curl(ctx, path)]))
    return body


def _unexpected(ctx, what: str, path: str, detail: str) -> Stop:
    return Stop(error(f"unexpected answer reading {what}: {detail}", reason=Reason.UNEXPECTED,
                       evidence={"path": path}, commands=[_curl(ctx, path)]))


class _Fields:
    """A JSON object of the API read by attribute, as the SDK's models are (an absent field is None),
    without building them: the SDK's typed resources cost ~0.25 s of imports and model validation per
    run, and a shape they do not expect is an error naming it either way (see ``_guard``)."""

    __slots__ = ("_data",)

    def __init__(self, data: dict):
        self._data = data

    @classmethod
    def of(cls, value):
        if isinstance(value, dict):
            return cls(value)
        if value is None or isinstance(value, (str, int, float, bool, list)):
            return value
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")

    def __getattr__(self, name: str):
        value = self._data.get(name)
        return _Fields(value) if isinstance(value, dict) else value


def _errors(exc) -> list:
    body = getattr(exc, "body", None)
    return body.get("errors", []) if isinstance(body, dict) else []


def _first_error(exc) -> str:
    errs = _errors(exc)
    return f"{errs[0].get('code')} {errs[0].get('message')}" if errs else str(exc)[:200]


def _zone_id(ctx) -> str:
    res = ctx.result_of(ZONE)
    if res is not None and res.evidence.get("id"):
        return res.evidence["id"]
    return _find_zone(ctx)["id"]  # run on its own (the runner normally includes the zone check)


def _find_zone(ctx) -> dict:
    name = ctx.section("cloudflare")["zone"].rstrip(".")

    def run():
        page = _raw(ctx, f"zone {name}", "Zone:Read", "/zones", {"name": name})
        zones = [z for z in map(_Fields.of, page["result"]) if z.name == name]
        if not zones:
            raise Stop(error(f"zone {name} is not visible to this token: it does not exist in the account, "
                              f"or the token has no Zone:Read on it", evidence={"zone": name},
                              reason=Reason.FORBIDDEN, hint="Check cloudflare.zone and the token's zone resources.",
                              commands=[_curl(ctx, f"/zones?name={name}")]))
        z = zones[0]
        return {"id": z.id, "name": z.name, "status": z.status, "paused": bool(z.paused),
                "name_servers": list(z.name_servers or []),
                "plan": getattr(getattr(z, "plan", None), "name", None)}

    return ctx.shared.get("cloudflare.zone", run)


def _setting(ctx, name: str):
    zone_id = _zone_id(ctx)
    path = f"/zones/{zone_id}/settings/{name}"
    return _Fields.of(_raw(ctx, f"zone setting {name}", "Zone Settings:Read", path)["result"]), zone_id


def _guard(fn):
    def run(ctx):
        try:
            return guard(fn)(ctx)
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
            # an answer whose shape we did not expect: say what, never "crashed"
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return error(f"unexpected answer from the CloudFlare API: {type(exc).__name__}: {first}"[:300],
                         reason=Reason.UNEXPECTED,
                         hint="Run the curl command of the check by hand to see the raw answer.")

    run.__name__, run.__doc__ = fn.__name__, fn.__doc__
    return run
