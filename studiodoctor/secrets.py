"""Redaction: the one mechanism every renderer and every error path goes through."""

from __future__ import annotations

import re
from typing import Any, Iterable

MASK = "***"
SECRET_KEY = re.compile(r"(?i)(pass(word|wd)?|pwd|secret|token|api[_-]?key|authorization|credential|cookie|signature"
                        r"|(^|_)auth($|_))")  # api_auth, basic_auth: "user:password"
_PATTERNS = [
    # scheme://user:password@host  ->  scheme://user:***@host
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@\s/]+)(@)"), r"\1" + MASK + r"\3"),
    # password=... in DSNs and query strings (also signed URL parameters)
    (re.compile(r"(?i)\b(password|passwd|pwd|token|secret|api_?key|x-goog-signature|signature|x-goog-credential|sig)=([^&\s'\"]+)"),
     r"\1=" + MASK),
    # header values, unless they only reference an environment variable ("Bearer $TOKEN")
    (re.compile(r"(?i)\b(authorization|x-auth-key|cookie|api-key|x-postmark-server-token)(\"?\s*[:=]\s*\"?)(?!\s*(?:bearer |token )?\$)([^\"\n]+)"),
     r"\1\2" + MASK),
    (re.compile(r"(?i)\b(bearer|token|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + MASK),
]
# What each pattern cannot match without, in an ASCII string lowercased: every group needs one of its words.
# A report has thousands of short strings and almost none holds any: the patterns run only where one is
# (a non-ASCII string, whose case-insensitive matches lowercasing need not find, always gets all four).
# The masks put in are "***", which joins no word: the test before them stands after.
_NEEDS = [
    (("://",), ("@",)),
    (("=",),),
    (("authorization", "x-auth-key", "cookie", "api-key", "x-postmark-server-token"),),
    (("bearer", "token", "basic"),),
]


class Redactor:
    """Masks known secret values and secret-shaped text in strings and nested data."""

    def __init__(self, secrets: Iterable[str] = ()):
        self._secrets: set[str] = set()
        self._longest_first: list[str] = []
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        if secret and len(str(secret)) >= 3:
            self._secrets.add(str(secret))
            self._longest_first = sorted(self._secrets, key=len, reverse=True)

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(self._secrets)

    def text(self, value: str) -> str:
        if not isinstance(value, str):
            return value
        for secret in self._longest_first:
            if secret in value:
                value = value.replace(secret, MASK)
        low = value.lower() if value.isascii() else None
        for (pattern, repl), needs in zip(_PATTERNS, _NEEDS):
            if low is None or all(any(word in low for word in group) for group in needs):
                value = pattern.sub(repl, value)
        return value

    def data(self, obj: Any) -> Any:
        """A copy of ``obj`` with every string redacted, and values of secret-named keys masked."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                if isinstance(k, str) and SECRET_KEY.search(k) and isinstance(v, str) and v:
                    out[k] = MASK
                else:
                    out[k] = self.data(v)
            return out
        if isinstance(obj, (list, tuple)):
            return [self.data(v) for v in obj]
        return obj


def secrets_in_value(key: str, value: str) -> list[str]:
    """The secret parts of one config value: all of it for secret-named keys, else passwords inside."""
    if not isinstance(value, str) or not value:
        return []
    found = []
    if SECRET_KEY.search(key):
        found.append(value)
        user, sep, password = value.partition(":")
        if sep and password and "://" not in value:  # "user:password" (basic auth): the password, and the
            import base64                             # header form, are secrets on their own too

            found += [password, base64.b64encode(value.encode()).decode()]
    m = re.search(r"://[^:/@\s]*:([^@\s/]+)@", value)
    if m:
        found.append(m.group(1))
    for m in re.finditer(r"(?i)\b(?:password|passwd|pwd|token|secret)=([^&\s'\"]+)", value):
        found.append(m.group(1))
    from urllib.parse import unquote

    return found + [unquote(f) for f in found if unquote(f) != f]
