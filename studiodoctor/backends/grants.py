"""The exact grant to add when a backend refused one of our reads: Redis ``NOPERM`` -> the ACL rule and
its ``ACL SETUSER`` line, PostgreSQL "permission denied" -> the ``GRANT``. Pure functions on the error
text (shared by the checks and ``studiodoctor preflight``); never a guess presented as a fact: when the
text names nothing, the answer says so."""

from __future__ import annotations

import re

# Redis 6/7: "NOPERM this user has no permissions to run the 'info' command[ or its subcommand]",
# "... to access one of the keys used as arguments", "... to access one of the channels used as arguments",
# inside a script: "... @user_script:1: this user has no permissions to run the 'publish' command".
_REDIS_CMD = re.compile(r"no permissions? to run the '([^']+)' command", re.I)
# ACL DRYRUN's answers name the key or channel: "... no permissions to access the '/0.celeryev/x' channel"
_REDIS_KEY = re.compile(r"no permissions? to access (?:one of the |a |the '[^']*' )?keys?", re.I)
_REDIS_CHANNEL = re.compile(r"no permissions? to access (?:one of the |a |the '[^']*' )?channels?", re.I)
# PostgreSQL: "permission denied for table contentcuration_channel" (>= 15: "for table", older "for relation")
_PG_TABLE = re.compile(r"permission denied for (?:table|relation) \"?([\w.]+)\"?", re.I)


def redis_missing(text: str) -> str:
    """The ACL rule a NOPERM names: "+info", "+client|list", "~<key>", "&<channel>", or ""."""
    text = str(text)
    if m := _REDIS_CMD.search(text):
        return "+" + m.group(1).lower()
    if _REDIS_KEY.search(text):
        return "~<key>"
    if _REDIS_CHANNEL.search(text):
        return "&<channel>"
    return ""


def redis_acl(user: str | None, text: str, fallback: tuple[str, ...] = ()) -> tuple[str, str]:
    """(what is missing, the command that grants it) for a NOPERM ``text``.

    -> ("+info", "ACL SETUSER doctor +info"); when the text names no rule, the ``fallback`` rules."""
    user = user or "default"
    missing = redis_missing(text)
    rules = (missing,) if missing and not missing.endswith("<key>") and not missing.endswith("<channel>") \
        else tuple(fallback) or ((missing,) if missing else ())
    named = (missing if missing in rules else rules[0] if len(rules) == 1 else f"one of {' '.join(rules)}" if rules
             else "?")
    return named, f"ACL SETUSER {user} {' '.join(rules)}".rstrip()


def redis_nopermission(user: str | None, text: str, fallback: tuple[str, ...] = ()) -> tuple[str, str]:
    """(summary fragment, hint) for a NOPERM: "ACL user doctor lacks +info", "ACL SETUSER doctor +info"."""
    missing, grant = redis_acl(user, text, fallback)
    return f"ACL user {user or 'default'} lacks {missing}", grant


def pg_table(text: str) -> str:
    """The table a PostgreSQL "permission denied" names, or ""."""
    m = _PG_TABLE.search(str(text))
    return m.group(1) if m else ""


def pg_grant_select(role: str | None, tables) -> str:
    tables = [t for t in tables if t]
    return f"GRANT SELECT ON {', '.join(tables) or '<table>'} TO {role or '<role>'}"
