"""Layer `cloudflare` (API side): the zone, its SSL/HTTPS/TLS settings, DNS records' proxy flag and
the cache rules, read with the official `cloudflare` SDK (imported inside the functions)."""

from __future__ import annotations

import fnmatch
import re

from studiodoctor.model import MUTATING, Command, Reason, Stop, error, fail, guard, ok, unreachable, warn
from studiodoctor.registry import check

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
       permissions=("Zone Settings:Read",))
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
       permissions=("Zone Settings:Read",), smoke=True)
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
       permissions=("Zone Settings:Read",))
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
       permissions=("Zone Settings:Read",))
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


@check(DNS_RECORDS, title="A proxied DNS record for each hostname", needs=NEEDS + ("dns.hostnames",),
       depends_on=(ZONE,), permissions=("DNS:Read",))
@_guard
def check_dns_records(ctx):
    """Each of `dns.hostnames` has an A/AAAA/CNAME record in the zone, proxied (orange cloud) for each
    of `dns.proxied_hostnames` (default: all of them).

    A missing record is NXDOMAIN for users (postmortem 002: the move to CloudFlare missed wildcard
    subdomains); a DNS-only record bypasses CloudFlare: no edge certificate, no cache, no DDoS
    protection, and the origin IP is public. Fix: DNS, Records: add the record / turn the proxy on."""
    zone_id = _zone_id(ctx)
    dns_cfg = ctx.section("dns")
    hostnames = [h.rstrip(".").lower() for h in dns_cfg.get("hostnames") or []]
    proxied_wanted = {h.rstrip(".").lower() for h in (dns_cfg.get("proxied_hostnames") or hostnames)}
    records = _call(ctx, "DNS records", "DNS:Read",
                    lambda cf: list(cf.dns.records.list(zone_id=zone_id, per_page=int(ctx.setting("per_page", 100)),
                                                        timeout=ctx.timeout())))
    by_name: dict[str, list] = {}
    for rec in records:
        if rec.type in ("A", "AAAA", "CNAME"):
            by_name.setdefault(rec.name.lower().rstrip("."), []).append(rec)
    missing, unproxied, seen = [], [], {}
    for host in hostnames:
        recs = by_name.get(host)
        via = host
        if not recs and "." in host:
            via = "*." + host.split(".", 1)[1]
            recs = by_name.get(via)
        if not recs:
            missing.append(host)
            continue
        seen[host] = [{"name": r.name, "type": r.type, "content": r.content, "proxied": r.proxied} for r in recs]
        if host in proxied_wanted and not all(r.proxied for r in recs):
            unproxied.append((host, [r for r in recs if not r.proxied]))
    evidence = {"zone_id": zone_id, "records_listed": len(records), "records": seen, "missing": missing,
                "not_proxied": [h for h, _ in unproxied]}
    commands = [_curl(ctx, f"/zones/{zone_id}/dns_records?name={h}") for h in missing + [h for h, _ in unproxied]]
    if missing:
        return fail(f"no DNS record for {', '.join(missing)} in zone {ctx.section('cloudflare')['zone']}",
                    evidence=evidence, commands=commands,
                    hint="Add the record (A/CNAME to the origin, proxied) in CloudFlare DNS.")
    if unproxied:
        host, recs = unproxied[0]
        return fail(f"{host} is DNS-only (not proxied): {recs[0].type} {recs[0].content} is exposed and "
                    f"CloudFlare's edge is bypassed", evidence=evidence, commands=commands,
                    hint="Turn the proxy status on (orange cloud) for the record in CloudFlare DNS.")
    return ok(f"{len(hostnames)} hostname(s) have proxied records ({len(records)} records in the zone)",
              evidence=evidence)


# ---- a small evaluator for CloudFlare's Rules language (the subset cache rules use) --------------------
class Undecidable(Exception):
    """The expression uses something this evaluator cannot decide."""


_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>\d+)|(?P<op>==|!=|&&|\|\||>=|<=|[(){}!~<>,])|'
                    r'(?P<word>[A-Za-z_][A-Za-z0-9_.\[\]"*]*))')


def _tokens(expr: str) -> list[tuple[str, object]]:
    out, pos = [], 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise Undecidable(f"cannot parse near {expr[pos:pos + 20]!r}")
        pos = m.end()
        if m.group("str") is not None:
            out.append(("str", re.sub(r"\\(.)", r"\1", m.group("str")[1:-1])))
        elif m.group("num") is not None:
            out.append(("num", int(m.group("num"))))
        elif m.group("op") is not None:
            out.append(("op", m.group("op")))
        elif m.group("word") is not None:
            out.append(("word", m.group("word")))
    return out


_COMPARE = {"eq", "==", "ne", "!=", "contains", "matches", "~", "wildcard", "lt", "le", "gt", "ge", "<", ">",
            "<=", ">=", "in"}
_FUNCS = {"starts_with", "ends_with", "lower", "upper", "len", "any", "all"}


class _Eval:
    def __init__(self, tokens, fields: dict):
        self.t, self.i, self.fields = tokens, 0, fields

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else (None, None)

    def take(self, value=None):
        tok = self.peek()
        if tok[0] is None or (value is not None and tok[1] != value):
            raise Undecidable(f"expected {value!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self):
        value = self.or_()
        if self.i != len(self.t):
            raise Undecidable(f"unexpected {self.peek()[1]!r}")
        return value

    def or_(self):
        value = self.and_()
        while self.peek()[1] in ("or", "||", "xor"):
            op = self.take()[1]
            right = self.and_()
            value = (value != right) if op == "xor" else (value or right)
        return value

    def and_(self):
        value = self.not_()
        while self.peek()[1] in ("and", "&&"):
            self.take()
            right = self.not_()
            value = value and right
        return value

    def not_(self):
        if self.peek()[1] in ("not", "!"):
            self.take()
            return not self.not_()
        return self.compare()

    def compare(self):
        left = self.value()
        op = self.peek()[1]
        if op == "strict":
            self.take()
            self.take("wildcard")
            return fnmatch.fnmatchcase(str(left), self.value())
        if op not in _COMPARE:
            if not isinstance(left, bool):
                raise Undecidable(f"{left!r} used as a condition")
            return left
        self.take()
        if op == "in":
            self.take("{")
            items = []
            while self.peek()[1] != "}":
                items.append(self.value())
            self.take("}")
            return left in items
        right = self.value()
        if op in ("eq", "=="):
            return left == right
        if op in ("ne", "!="):
            return left != right
        if op == "contains":
            return str(right) in str(left)
        if op in ("matches", "~"):
            return re.search(str(right), str(left)) is not None
        if op == "wildcard":
            return fnmatch.fnmatchcase(str(left).lower(), str(right).lower())
        cmp = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}.get(op, op)
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[cmp]

    def value(self):
        kind, tok = self.take()
        if kind in ("str", "num"):
            return tok
        if tok == "(":
            value = self.or_()
            self.take(")")
            return value
        if kind == "word" and tok in ("true", "false"):
            return tok == "true"
        if kind == "word" and tok in _FUNCS and self.peek()[1] == "(":
            self.take("(")
            args = [self.value()]
            while self.peek()[1] == ",":
                self.take(",")
                args.append(self.value())
            self.take(")")
            if tok == "starts_with":
                return str(args[0]).startswith(str(args[1]))
            if tok == "ends_with":
                return str(args[0]).endswith(str(args[1]))
            if tok == "lower":
                return str(args[0]).lower()
            if tok == "upper":
                return str(args[0]).upper()
            if tok == "len":
                return len(args[0])
            raise Undecidable(f"function {tok}() not supported")
        if kind == "word":
            if tok not in self.fields:
                raise Undecidable(f"field {tok} not known to studiodoctor's evaluator")
            return self.fields[tok]
        raise Undecidable(f"unexpected {tok!r}")


def matches(expression: str, fields: dict) -> bool:
    """Evaluate a CloudFlare rule expression for a request described by ``fields`` (raises Undecidable)."""
    return bool(_Eval(_tokens(expression), fields).parse())


def request_fields(host: str, path: str, method: str = "GET") -> dict:
    ext = path.rsplit("/", 1)[-1].rsplit(".", 1)[1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    return {"http.host": host, "http.request.uri.path": path, "http.request.uri": path,
            "http.request.uri.path.extension": ext, "http.request.full_uri": f"https://{host}{path}",
            "http.request.method": method, "ssl": True, "http.request.uri.query": "",
            "raw.http.request.uri.path": path}


PHASE = "http_request_cache_settings"


def _raw(ctx, what: str, permission: str, path: str, params: dict | None = None):
    """GET a v4 path through the SDK's client, returning the JSON envelope as plain data (no typed model:
    a shape the models do not expect must become an error naming it, not an AttributeError)."""
    def fn(cf):
        return cf.get(path, cast_to=object, options={"params": params or {}, "timeout": ctx.timeout()})

    body = _call(ctx, what, permission, fn)
    if not isinstance(body, dict) or "result" not in body:
        raise Stop(error(f"unexpected answer reading {what}: {type(body).__name__} without a `result` "
                          f"(not a CloudFlare v4 envelope)", reason=Reason.UNEXPECTED, evidence={"path": path},
                          commands=[_curl(ctx, path)]))
    return body


def _unexpected(ctx, what: str, path: str, detail: str) -> Stop:
    return Stop(error(f"unexpected answer reading {what}: {detail}", reason=Reason.UNEXPECTED,
                       evidence={"path": path}, commands=[_curl(ctx, path)]))


def _rules_of(ctx, result, what: str, path: str) -> list[dict] | None:
    """Rules from a ruleset answer: an object with `rules` (absent or null: none), a list of rulesets
    (their rules, for the cache phase), or a bare list of rules. None: rulesets without their rules."""
    if isinstance(result, dict):
        rules = result.get("rules")
        if rules is None:
            return [] if "id" in result or "phase" in result else None
        if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
            raise _unexpected(ctx, what, path, f"`rules` is a {type(rules).__name__}, not a list of rules")
        return rules
    if isinstance(result, list):
        if not all(isinstance(r, dict) for r in result):
            raise _unexpected(ctx, what, path, "a list whose items are not objects")
        if all("expression" in r or "action" in r for r in result):
            return list(result)  # a bare list of rules
        mine = [r for r in result if r.get("phase") in (None, PHASE)]
        if any("rules" in r for r in mine):
            return [rule for r in mine for rule in (r.get("rules") or [])]
        return None if mine else []
    raise _unexpected(ctx, what, path, f"`result` is {type(result).__name__}, expected a ruleset object")


def _name(rule: dict) -> str:
    return f"'{rule.get('description') or rule.get('ref') or rule.get('id') or '(unnamed)'}'"


def _cache_rules(ctx, zone_id: str) -> tuple[list[dict], str]:
    """(rules, where they were found): the phase entrypoint first; without one (404), the zone's rulesets
    of the phase (List zone rulesets, cursor-paginated through `result_info.cursor`), each read by id."""
    what, perm = "cache rules", "Cache Rules:Read"
    entry = f"/zones/{zone_id}/rulesets/phases/{PHASE}/entrypoint"
    try:
        body = _raw(ctx, what, perm, entry)
        rules = _rules_of(ctx, body["result"], what, entry)
        if rules is not None:
            return rules, "entrypoint"
    except Stop as stop:
        if (stop.result.evidence or {}).get("status") != 404:
            raise
    listing = f"/zones/{zone_id}/rulesets"
    summaries, cursor = [], None
    for _ in range(50):
        body = _raw(ctx, "the zone's rulesets", perm, listing, {"cursor": cursor} if cursor else None)
        result = body["result"]
        if result is None:
            break
        if not isinstance(result, list) or not all(isinstance(r, dict) for r in result):
            raise _unexpected(ctx, "the zone's rulesets", listing, f"`result` is {type(result).__name__}, "
                                                                    "expected a list of rulesets")
        summaries += [r for r in result if r.get("phase") == PHASE and r.get("kind") in ("zone", "custom", None)]
        info = body.get("result_info") or {}
        cursor = info.get("cursor") if isinstance(info, dict) else None
        if not cursor or not result:
            break
    rules = []
    for summary in summaries:
        rid = summary.get("id")
        if not rid:
            raise _unexpected(ctx, "the zone's rulesets", listing, "a ruleset without an id")
        if "rules" in summary:
            rules += summary.get("rules") or []
            continue
        path = f"/zones/{zone_id}/rulesets/{rid}"
        got = _rules_of(ctx, _raw(ctx, what, perm, path)["result"], what, path)
        if got is None:
            raise _unexpected(ctx, what, path, "a ruleset without its rules")
        rules += got
    return rules, ("zone rulesets" if summaries else "none")


@check(CACHE_RULES, title="Cache rules keep /content/databases/ out of the cache", needs=NEEDS,
       depends_on=(ZONE,), permissions=("Cache Rules:Read",))
@_guard
def check_cache_rules(ctx):
    """The zone's cache rules (phase `http_request_cache_settings`) make `/content/databases/` not
    eligible for cache, while `/content/storage/` may be cached.

    Channel databases (`/content/databases/<channel>.sqlite3`) are rewritten on every publish under the
    same name; a cached copy serves Kolibri a stale channel (Studio marks them `Cache-Control: private`
    at nginx for this reason). The rules are evaluated in order for a sample database path
    (`cloudflare.databases_path`) on each hostname; the last matching rule that sets `cache` wins.
    No matching rule: CloudFlare's defaults (sqlite3 is not a default-cached extension) and the origin's
    Cache-Control decide, and legacy Page Rules (not read here) could still cache it: a warning.
    An expression this evaluator cannot decide is an error, never a guess. Fix: add a cache rule
    `starts_with(http.request.uri.path, "/content/databases/")` -> Bypass cache, placed last."""
    zone_id = _zone_id(ctx)
    path = ctx.setting("databases_path", "/content/databases/")
    if path.endswith("/"):
        path += "0123456789abcdef0123456789abcdef.sqlite3"
    hosts = [h.rstrip(".") for h in ctx.section("dns").get("hostnames") or []] or \
        [u.split("//", 1)[-1].split("/", 1)[0].split(":", 1)[0] for u in ctx.profile.value("public_urls") or []] or \
        [ctx.section("cloudflare")["zone"]]
    commands = [_curl(ctx, f"/zones/{zone_id}/rulesets/phases/http_request_cache_settings/entrypoint")]

    rules, found_in = _cache_rules(ctx, zone_id)
    evidence = {"sample_path": path, "hosts": hosts, "found_in": found_in, "rules": [
        {"description": r.get("description"), "expression": r.get("expression"), "action": r.get("action"),
         "enabled": r.get("enabled", True), "cache": (r.get("action_parameters") or {}).get("cache")}
        for r in rules]}
    verdicts = {}
    for host in hosts:
        fields = request_fields(host, path)
        decided, decided_at, undecidable = None, -1, []
        for i, rule in enumerate(rules):
            if rule.get("enabled", True) is False or rule.get("action") != "set_cache_settings":
                continue
            cache = (rule.get("action_parameters") or {}).get("cache")
            if cache is None:
                continue
            try:
                hit = matches(str(rule.get("expression") or ""), fields)
            except Undecidable as exc:
                undecidable.append((i, rule, str(exc)))
                continue
            if hit:
                decided, decided_at = (rule, bool(cache)), i
        if undecidable and undecidable[-1][0] > decided_at:
            i, rule, why = undecidable[-1]
            return error(f"cannot decide whether {path} is cached on {host}: rule "
                         f"{_name(rule)} ({rule.get('expression')}): {why}", evidence=evidence,
                         commands=commands, hint="Read the rule in the dashboard (Caching, Cache Rules) and "
                         "check with edge.databases_not_cached, which looks at cf-cache-status.")
        verdicts[host] = decided
    cached = {h: v for h, v in verdicts.items() if v and v[1]}
    if cached:
        host, (rule, _) = next(iter(cached.items()))
        return fail(f"cache rule {_name(rule)} makes {path} eligible for cache on {host}: "
                    f"Kolibri can get stale channel databases", evidence=evidence, commands=commands,
                    hint="Add a rule for starts_with(http.request.uri.path, \"/content/databases/\") with "
                         "Bypass cache after the broader one, or narrow the broader rule.")
    if not rules or not all(verdicts.values()):
        where = "no cache rules at all" if not rules else "no cache rule matches it"
        return warn(f"{path}: {where}; CloudFlare's defaults (sqlite3 not cached by extension) and the origin's "
                    f"Cache-Control decide, and Page Rules were not inspected", evidence=evidence, commands=commands,
                    hint="Make it explicit: a cache rule for /content/databases/ with Bypass cache.")
    rule = next(iter(verdicts.values()))[0]
    return ok(f"rule {_name(rule)} bypasses the cache for {path}", evidence=evidence)
