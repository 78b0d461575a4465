"""cloudflare.cache_rules: the zone's cache rules keep /content/databases/ out of the cache (evaluated with
``studiodoctor.parsers.cfrules``)."""

from __future__ import annotations

from studiodoctor.model import Reason, Stop, error, fail, ok, warn
from studiodoctor.parsers.cfrules import Undecidable, matches, request_fields
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import CACHE_RULES, NEEDS, ZONE, _curl, _guard, _raw, _unexpected, _zone_id


PHASE = "http_request_cache_settings"


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
       depends_on=(ZONE,), permissions=("Cache Rules:Read",), produces=("caching",))
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
