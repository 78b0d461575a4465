"""What the cloudflare checks share: the check ids, the SDK client (no retries, the check's deadline), SDK
calls whose errors become a ``Stop`` (403 names the permission), the zone's id and settings, and the
runbook's curl lines."""

from __future__ import annotations

from studiodoctor.model import MUTATING, Command, Reason, Stop, error, guard, unreachable


# imported by the runner before any check starts (see studiodoctor.runner.preload)
SDK_IMPORTS = ("cloudflare",)

ZONE = "cloudflare.zone"
DEVELOPMENT_MODE = "cloudflare.development_mode"
SSL_MODE = "cloudflare.ssl_mode"
ALWAYS_HTTPS = "cloudflare.always_use_https"
MIN_TLS = "cloudflare.min_tls_version"
DNS_RECORDS = "cloudflare.dns_records"
CACHE_RULES = "cloudflare.cache_rules"

NEEDS = ("cloudflare.api_token", "cloudflare.zone")
TOKEN_ENV = "$CLOUDFLARE_API_TOKEN"


def _client(ctx):
    def make():
        from cloudflare import Cloudflare

        cfg = ctx.section("cloudflare")
        return Cloudflare(api_token=cfg["api_token"], base_url=cfg.get("api_url") or None, max_retries=0,
                          timeout=ctx.timeout())

    return ctx.shared.get("cloudflare.client", make)


def _curl(ctx, path: str) -> Command:
    api = (ctx.section("cloudflare").get("api_url") or "https://api.cloudflare.com/client/v4").rstrip("/")
    return Command(f'curl -s -H "Authorization: Bearer {TOKEN_ENV}" {api}{path}')


def _patch(ctx, path: str, value: str) -> Command:
    api = (ctx.section("cloudflare").get("api_url") or "https://api.cloudflare.com/client/v4").rstrip("/")
    return Command(f'curl -s -X PATCH -H "Authorization: Bearer {TOKEN_ENV}" -H "Content-Type: application/json" '
                   f"{api}{path} -d '{{\"value\":\"{value}\"}}'", MUTATING, "changes the zone setting")


def _call(ctx, what: str, permission: str, fn):
    """Run one SDK call; API errors become a Result in Stop (403 names the permission)."""
    import cloudflare

    api = ctx.section("cloudflare").get("api_url") or "api.cloudflare.com"
    try:
        return fn(_client(ctx))
    except cloudflare.APITimeoutError:
        raise Stop(unreachable("CloudFlare API", api, "timed out", timed_out=True))
    except cloudflare.APIConnectionError as exc:
        cause = exc.__cause__ or exc
        from studiodoctor.httpprobe import describe_error

        raise Stop(unreachable("CloudFlare API", api, describe_error(cause)[1]))
    except cloudflare.PermissionDeniedError as exc:
        raise Stop(error(f"403 reading {what}: the API token lacks the \"{permission}\" permission",
                          evidence={"status": 403, "errors": _errors(exc)}, reason=Reason.FORBIDDEN,
                          hint=f"Give the token {permission} on the zone (CloudFlare dashboard, My Profile, "
                               "API Tokens, edit, Permissions), or use a token that has it."))
    except cloudflare.AuthenticationError as exc:
        raise Stop(error(f"401 reading {what}: the API token was rejected (invalid, expired or revoked)",
                          evidence={"status": 401, "errors": _errors(exc)}, reason=Reason.AUTH,
                          hint="Create a new API token and set it in cloudflare.api_token ($CLOUDFLARE_API_TOKEN).",
                          commands=[_curl(ctx, "/user/tokens/verify")]))
    except cloudflare.BadRequestError as exc:
        raise Stop(error(f"400 reading {what}: {_first_error(exc)}", evidence={"status": 400, "errors": _errors(exc)},
                          reason=Reason.AUTH, hint="A malformed token is answered 400: check cloudflare.api_token."))
    except cloudflare.APIStatusError as exc:
        raise Stop(error(f"CloudFlare API answered {exc.status_code} reading {what}: {_first_error(exc)}",
                          evidence={"status": exc.status_code, "errors": _errors(exc)}))
    except (ValueError, TypeError, AttributeError, KeyError, cloudflare.APIResponseValidationError) as exc:
        # a 2xx whose body is not the API's JSON (an HTML page, an empty body, another shape)
        first = (str(exc).strip().splitlines() or [""])[0]
        raise Stop(error(f"unreadable answer from the CloudFlare API reading {what} "
                          f"({type(exc).__name__}: {first})"[:300], evidence={"api_url": api}))


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
        page = _call(ctx, f"zone {name}", "Zone:Read",
                     lambda cf: cf.zones.list(name=name, timeout=ctx.timeout()))
        zones = [z for z in page.result if z.name == name]
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
    return _call(ctx, f"zone setting {name}", "Zone Settings:Read",
                 lambda cf: cf.zones.settings.get(name, zone_id=zone_id, timeout=ctx.timeout())), zone_id


def _guard(fn):
    def run(ctx):
        try:
            return guard(fn)(ctx)
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
            # an answer whose shape the SDK's models (or we) did not expect: say what, never "crashed"
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return error(f"unexpected answer from the CloudFlare API: {type(exc).__name__}: {first}"[:300],
                         reason=Reason.UNEXPECTED,
                         hint="Run the curl command of the check by hand to see the raw answer.")

    run.__name__, run.__doc__ = fn.__name__, fn.__doc__
    return run
