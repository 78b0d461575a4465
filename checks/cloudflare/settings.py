"""The zone and its settings: cloudflare.zone, cloudflare.development_mode, cloudflare.ssl_mode,
cloudflare.always_use_https, cloudflare.min_tls_version."""

from __future__ import annotations

from studiodoctor.model import error, fail, ok, warn
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import (ALWAYS_HTTPS, DEVELOPMENT_MODE, MIN_TLS, NEEDS, SSL_MODE, ZONE, _curl, _find_zone,
                     _guard, _patch, _setting)


# ---------------------------------------------------------------------------------------------- checks
@check(ZONE, title="Zone active and not paused", needs=NEEDS, permissions=("Zone:Read",), smoke=True)
@_guard
def check_zone(ctx):
    """The zone (`cloudflare.zone`) exists for the token, is `active` and not paused.

    `pending` means the registrar does not delegate to CloudFlare's nameservers yet (nothing is proxied);
    a paused zone answers DNS but stops proxying: no edge TLS certificate, no cache, origin exposed.
    Fix: set the nameservers listed in evidence at the registrar; un-pause in the dashboard (Overview,
    Advanced Actions)."""
    zone = _find_zone(ctx)
    commands = [_curl(ctx, f"/zones/{zone['id']}")]
    if zone["status"] != "active":
        return fail(f"zone {zone['name']} is {zone['status']}, not active", evidence=zone, commands=commands,
                    hint="A pending zone waits for the registrar to delegate to these nameservers: "
                         f"{', '.join(zone['name_servers'])}.")
    if zone["paused"]:
        return fail(f"zone {zone['name']} is paused: CloudFlare serves DNS only, nothing is proxied", evidence=zone,
                    commands=commands, hint="Un-pause the zone (dashboard, Overview, Advanced Actions, "
                                            "Resume CloudFlare on site).")
    return ok(f"zone {zone['name']} active ({zone['plan'] or 'plan unknown'}), NS {', '.join(zone['name_servers'])}",
              evidence=zone)


@check(DEVELOPMENT_MODE, title="Development mode off", needs=NEEDS, depends_on=(ZONE,),
       permissions=("Zone Settings:Read",), produces=("caching", "slow"))
@_guard
def check_development_mode(ctx):
    """Development mode is off.

    Development mode bypasses CloudFlare's cache for up to 3 hours: every static asset and content
    object goes to the origin, which loads nginx and GCS and makes pages slow. It switches itself off,
    so a warning, not a failure. Fix: turn it off (Caching, Configuration)."""
    res, zone_id = _setting(ctx, "development_mode")
    value = getattr(res, "value", None)
    left = getattr(res, "time_remaining", None)
    evidence = {"value": value, "time_remaining_s": left}
    if value == "off":
        return ok("development mode off", evidence=evidence)
    if value == "on":
        return warn(f"development mode is on{f' for {int(left) // 60} more min' if left else ''}: the cache is bypassed",
                    evidence=evidence, commands=[_patch(ctx, f"/zones/{zone_id}/settings/development_mode", "off")],
                    hint="Turn development mode off once the debugging it was on for is done.")
    return error(f"unexpected development_mode value {value!r}", evidence=evidence)


@check(SSL_MODE, title="SSL mode full or strict", needs=NEEDS, depends_on=(ZONE,),
       permissions=("Zone Settings:Read",), smoke=True, produces=("ssl",))
@_guard
def check_ssl_mode(ctx):
    """The zone's SSL/TLS encryption mode is Full or Full (strict) (`full`/`strict`).

    `flexible` makes CloudFlare talk plain HTTP to the origin: the hop to Google Cloud is unencrypted and,
    as soon as the origin redirects HTTP to HTTPS, users get an endless redirect loop (postmortem 004:
    the expired Let's Encrypt certificate plus Flexible mode; switching to Full fixed it). `off` serves
    no HTTPS at all. Fix: SSL/TLS, Overview, choose Full (strict) when the origin certificate is valid."""
    res, zone_id = _setting(ctx, "ssl")
    value = getattr(res, "value", None)
    evidence = {"value": value}
    fix = _patch(ctx, f"/zones/{zone_id}/settings/ssl", "strict")
    if value == "strict":
        return ok("SSL mode Full (strict): the origin certificate is validated", evidence=evidence)
    if value == "full":
        return ok("SSL mode Full (encrypted to the origin; strict would also validate its certificate)",
                  evidence=evidence)
    if value == "flexible":
        return fail("SSL mode is Flexible: plain HTTP to the origin, and a redirect loop as soon as the origin "
                    "redirects to HTTPS (postmortem 004)", evidence=evidence, commands=[fix],
                    hint="Set SSL mode to Full (strict); make sure the origin serves a valid certificate first "
                         "(traefik layer), else use Full.")
    if value == "off":
        return fail("SSL mode is off: the zone serves no HTTPS", evidence=evidence, commands=[fix],
                    hint="Set SSL mode to Full (strict).")
    return error(f"unexpected ssl value {value!r}", evidence=evidence)


@check(ALWAYS_HTTPS, title="Always Use HTTPS on", needs=NEEDS, depends_on=(ZONE,),
       permissions=("Zone Settings:Read",), produces=("ssl", "headers"))
@_guard
def check_always_use_https(ctx):
    """Always Use HTTPS is on: CloudFlare redirects plain HTTP to HTTPS for Studio (the seed says so).

    Off, `http://studio...` is served in clear text (logins, session cookies) unless something else
    redirects; `edge.https_redirect` checks the behaviour itself. Fix: SSL/TLS, Edge Certificates,
    Always Use HTTPS."""
    res, zone_id = _setting(ctx, "always_use_https")
    value = getattr(res, "value", None)
    if value == "on":
        return ok("Always Use HTTPS on", evidence={"value": value})
    if value == "off":
        return fail("Always Use HTTPS is off: CloudFlare does not redirect plain HTTP to HTTPS",
                    evidence={"value": value},
                    commands=[_patch(ctx, f"/zones/{zone_id}/settings/always_use_https", "on")],
                    hint="Turn Always Use HTTPS on (SSL/TLS, Edge Certificates).")
    return error(f"unexpected always_use_https value {value!r}", evidence={"value": value})


@check(MIN_TLS, title="Minimum TLS version at least 1.2", needs=NEEDS, depends_on=(ZONE,),
       permissions=("Zone Settings:Read",), produces=("ssl",))
@_guard
def check_min_tls(ctx):
    """The zone's minimum TLS version is 1.2 or higher (`cloudflare.min_tls`, default "1.2").

    TLS 1.0/1.1 are deprecated and weak; every browser and Kolibri's Python clients speak 1.2.
    A warning: it weakens security but breaks nothing. Fix: SSL/TLS, Edge Certificates, Minimum TLS Version."""
    res, zone_id = _setting(ctx, "min_tls_version")
    value = str(getattr(res, "value", ""))
    wanted = str(ctx.setting("min_tls", "1.2"))
    try:
        below = tuple(int(p) for p in value.split(".")) < tuple(int(p) for p in wanted.split("."))
    except ValueError:
        return error(f"unexpected min_tls_version value {value!r}", evidence={"value": value})
    if below:
        return warn(f"minimum TLS version is {value}, below {wanted}", evidence={"value": value, "wanted": wanted},
                    commands=[_patch(ctx, f"/zones/{zone_id}/settings/min_tls_version", wanted)],
                    hint=f"Raise Minimum TLS Version to {wanted}.")
    return ok(f"minimum TLS version {value}", evidence={"value": value, "wanted": wanted})
