"""Redis and the Celery broker: ``ACL WHOAMI``; ``ACL DRYRUN <user> <command> <key>`` per ACL rule
when we may (Redis >= 7); else read commands are tried as the checks send them (PING, INFO, CLIENT
LIST, LLEN celery...), and the broadcast's writes are left `unknown` (trying them would write) with the
DRYRUN line an admin can run."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from ..model import Reason, error
from .common import pf, declared, entry, verdict, first_line


_RULE = re.compile(r"(?<![\w|])([+~&][^\s,;()]+)")
_WORD = re.compile(r"\b([A-Z]{3,})\b")
_NO_GRANT = {"auth", "hello"}   # commands every user may send (no ACL check)
PIDBOX_KEY = "x.reply.celery.pidbox"


def redis_rules(permissions) -> list[str]:
    """The ACL rules a set of declarations names: "+publish", "~celery*", and "LLEN" -> "+llen"."""
    rules: list[str] = []
    for perm in permissions:
        found = _RULE.findall(perm) or ["+" + w.lower() for w in _WORD.findall(perm)]
        for rule in found:
            if rule.lstrip("+") not in _NO_GRANT and rule not in rules:
                rules.append(rule)
    return rules


def _probe(rule: str, db: int) -> list[str] | None:
    """The command (with keys like the checks') whose permission stands for ``rule``; None for patterns
    whose command carries the key."""
    channel = f"/{db}.celery.pidbox"
    heartbeats = f"/{db}.celeryev/worker.heartbeat"   # celery.busy_slots' SUBSCRIBE (checks.celery HEARTBEAT_CHANNEL)
    table = {
        "+ping": ["PING"], "+info": ["INFO", "server"], "+client|list": ["CLIENT", "LIST"], "+llen": ["LLEN", "celery"],
        "+lindex": ["LINDEX", "celery", "0"], "+hlen": ["HLEN", "unacked"], "+hget": ["HGET", "unacked", "x"],
        "+zcard": ["ZCARD", "unacked_index"], "+zrange": ["ZRANGE", "unacked_index", "0", "0"],
        "+publish": ["PUBLISH", channel, "x"], "+evalsha": ["EVALSHA", "0" * 40, "0"],
        "+script|load": ["SCRIPT", "LOAD", "return 1"], "+script|exists": ["SCRIPT", "EXISTS", "0" * 40],
        "+time": ["TIME"], "+sadd": ["SADD", "_kombu.binding.reply.celery.pidbox", "x"],
        "+zadd": ["ZADD", "_kombu.binding_deadlines", "1", "x"],
        "+srem": ["SREM", "_kombu.binding.reply.celery.pidbox", "x"], "+del": ["DEL", PIDBOX_KEY],
        "+brpop": ["BRPOP", PIDBOX_KEY, "1"], "+multi": ["MULTI"], "+exec": ["EXEC"],
        "+subscribe": ["SUBSCRIBE", heartbeats],
        "~celery*": ["LLEN", "celery"], "~unacked*": ["HLEN", "unacked"],
        "~_kombu.binding_deadlines": ["ZCARD", "_kombu.binding_deadlines"],
        "~*.reply.celery.pidbox*": ["LLEN", PIDBOX_KEY + "\x06\x163"],
    }
    if rule.startswith("&"):   # a channel: subscribed to (the workers' events) or published on (the pidbox)
        return ["SUBSCRIBE", rule[1:]] if ".celeryev/" in rule else ["PUBLISH", rule[1:], "x"]
    return table.get(rule)


# Read commands the checks send anyway: without ACL DRYRUN we may try them (a NOPERM is the answer).
_TRY_READS = {"PING", "INFO", "CLIENT", "LLEN", "LINDEX", "HLEN", "HGET", "ZCARD", "ZRANGE", "TIME"}


def _redis_client(url: str, timeout: float):
    import redis

    return redis.Redis.from_url(url, protocol=2, socket_timeout=timeout, socket_connect_timeout=timeout,
                                retry=None, health_check_interval=0, decode_responses=True)


def redis_preflight(ctx, url: str, checks: dict[str, list[str]], backend: str):
    """The shared Redis part: identity, then each rule by DRYRUN, by trying a read, or unknown."""
    import redis

    from ..backends import grants

    parts = urlsplit(url)
    try:
        db = int((parts.path or "/0").strip("/") or 0)
    except ValueError:
        db = 0
    configured_user = unquote(parts.username) if parts.username else "default"
    address = f"{parts.hostname}:{parts.port or 6379}/{db}"
    client = _redis_client(url, ctx.timeout(margin=0.2))
    try:
        no_acl = False
        try:
            user = client.execute_command("ACL", "WHOAMI")
            how_id = "ACL WHOAMI"
        except redis.exceptions.NoPermissionError:
            user, how_id = configured_user, "from the URL: ACL WHOAMI not permitted"
        except redis.exceptions.ResponseError as exc:  # Redis < 6: no ACL, one password for everyone
            user, how_id, no_acl = "default", "no ACL on this server: its password grants every command", True
        identity = f"{user} ({how_id})"
        rules = []
        for perm, ids in checks.items():
            for rule in redis_rules([perm]):
                rules.append((rule, ids))
        merged: dict[str, list[str]] = {}
        for rule, ids in rules:
            merged.setdefault(rule, []).extend(ids)
        entries, missing_rules = [], []
        dryrun = True
        for rule, ids in merged.items():
            probe = _probe(rule, db)
            if probe is None:
                entries.append(entry(rule, ids, None, "no probe for this rule", detail="no probe for this rule"))
                continue
            granted, how, detail = None, "", ""
            if no_acl:
                granted, how = True, "no ACL (Redis < 6): the password grants every command"
            elif dryrun:
                try:
                    answer = client.execute_command("ACL", "DRYRUN", user, *probe)
                    granted, how = answer in ("OK", b"OK"), "ACL DRYRUN " + " ".join(probe[:2])
                    detail = "" if granted else str(answer)[:200]
                    other = "" if granted else grants.redis_missing(str(answer))
                    if other.startswith("+") and other != rule:  # the probe's command itself is refused
                        granted, detail = None, f"cannot tell until {other} is granted"
                    elif rule.startswith("+") and other[:1] in ("~", "&"):  # ACL checks the command first
                        granted, detail = True, ""
                        how += f" (the command is allowed: the refusal names its {'key' if other[0] == '~' else 'channel'})"
                except redis.exceptions.NoPermissionError:
                    dryrun = False
                except redis.exceptions.ResponseError as exc:  # Redis < 7: no DRYRUN
                    dryrun, detail = False, first_line(exc)
            if granted is None and not how and probe[0] in _TRY_READS:
                try:
                    client.execute_command(*probe)
                    granted, how = True, "tried " + " ".join(probe[:2])
                except redis.exceptions.NoPermissionError as exc:
                    granted, how, detail = False, "tried " + " ".join(probe[:2]), first_line(exc)
                except redis.exceptions.ResponseError as exc:
                    granted, how, detail = True, "tried " + " ".join(probe[:2]) + f" (answered {first_line(exc)})", ""
            if granted is None and not how:
                how = f"not tried: it would write, and ACL DRYRUN is not permitted to {user}"
                detail = (f"ACL DRYRUN is not permitted to {user}; an admin can run: ACL DRYRUN {user} "
                          + " ".join(p if p.isprintable() else repr(p) for p in probe))
            if granted is False:
                missing_rules.append(rule)
            entries.append(entry(rule, ids, granted, how, grant=f"ACL SETUSER {user} {rule}" if granted is False
                                  else "", detail=detail))
        lines = [f"ACL SETUSER {user} {' '.join(missing_rules)}"] if missing_rules else []
        if not missing_rules and any(e["granted"] is None for e in entries):
            unknown = [e["permission"] for e in entries if e["granted"] is None]
            lines = [f"if missing: ACL SETUSER {user} {' '.join(unknown)}"]
        return verdict(backend, identity, entries, lines, evidence={"address": address})
    except redis.exceptions.AuthenticationError as exc:
        return error(f"{backend}: Redis at {address} rejected our credentials: {first_line(exc)}", reason=Reason.AUTH)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        return error(f"{backend}: no answer from Redis at {address}: {first_line(exc)}", reason=Reason.TIMEOUT
                     if isinstance(exc, redis.exceptions.TimeoutError) else Reason.UNEXPECTED)
    except redis.exceptions.RedisError as exc:
        return error(f"{backend}: Redis at {address} answered: {first_line(exc)}",
                     hint=grants.redis_acl(configured_user, str(exc))[1])
    finally:
        client.close()


@pf("redis.preflight", title="Redis: who we are and what the redis checks may do", needs=("redis.url",))
def preflight_redis(ctx):
    """The redis layer's user (ACL WHOAMI) and its grants against the redis checks' declarations."""
    return redis_preflight(ctx, str(ctx.config.get("url")), declared(layers={"redis"}), "redis")


@pf("celery.preflight", title="Celery broker: who we are and what the celery checks may do",
    needs=("redis.url",))
def preflight_celery(ctx):
    """The celery layer's broker user and the grants its reads and broadcasts need (CONTROL_ACL)."""
    url = str(ctx.setting("broker_url", "") or ctx.profile.value("redis.url") or "")
    parts = urlsplit(url)
    db = (parts.path or "/0").strip("/") or "0"
    checks: dict[str, list[str]] = {}
    for perm, ids in declared(layers={"celery"}).items():
        if not perm.startswith("SELECT on"):   # "<db>" in a declared channel: the broker's database
            checks.setdefault(perm.replace("<db>", db), []).extend(ids)
    checks.setdefault("PING", []).append("redis.reachable")
    checks[f"&/{db}.celery.pidbox"] = [c for p, ids in checks.items() if "+publish" in p for c in ids]
    return redis_preflight(ctx, url, checks, "celery broker")
