"""Reading a ``Cache-Control`` header as RFC 9111 says, for every layer that judges one (nginx, gcs, edge).

- directives are comma-separated; names are case-insensitive (lower-cased here); an argument is a token
  or a quoted-string, and a quoted-string may hold commas (``private="set-cookie, x-id"``) and ``\\``-escapes;
- a directive given twice: the first occurrence is used (RFC 9111 §4.2.1);
- freshness (``max_age``): for a shared cache ``s-maxage`` overrides ``max-age`` (§5.2.2.10); a
  freshness directive whose value is not a delta-seconds is *present but invalid*, and such a response
  is treated as stale, i.e. 0 seconds (§4.2.1, "invalid freshness information"); a value beyond
  2^31 counts as 2^31 (§1.2.2).
"""

from __future__ import annotations

DELTA_SECONDS_MAX = 2 ** 31


def parse_cache_control(value: str | None) -> dict[str, str | bool]:
    """``'private, max-age=5'`` -> ``{"private": True, "max-age": "5"}``; a directive with an argument
    maps to its (unquoted) argument, possibly ``""``; one without maps to ``True``."""
    out: dict[str, str | bool] = {}
    text = value or ""
    i, n = 0, len(text)
    while i < n:
        # one directive: name [ "=" ( token / quoted-string ) ], up to the next comma outside quotes
        j = i
        while j < n and text[j] not in ",=":
            j += 1
        name = text[i:j].strip().lower()
        arg: str | bool = True
        if j < n and text[j] == "=":
            j += 1
            while j < n and text[j] in " \t":
                j += 1
            if j < n and text[j] == '"':
                j += 1
                chars = []
                while j < n and text[j] != '"':
                    if text[j] == "\\" and j + 1 < n:
                        j += 1
                    chars.append(text[j])
                    j += 1
                arg = "".join(chars)
                while j < n and text[j] != ",":   # skip the closing quote and anything up to the comma
                    j += 1
            else:
                k = j
                while j < n and text[j] != ",":
                    j += 1
                arg = text[k:j].strip()
        if name and name not in out:
            out[name] = arg
        i = j + 1
    return out


def delta_seconds(value) -> int | None:
    """The delta-seconds of a directive's argument; None when it is not one (missing, empty, signed, text)."""
    if not isinstance(value, str) or not value.isdigit() or not value.isascii():
        return None
    return min(int(value), DELTA_SECONDS_MAX)


def max_age(directives: dict, *, shared: bool = True) -> int | None:
    """The freshness lifetime the directives give (seconds), for a shared cache unless ``shared=False``;
    None when no freshness directive is present, 0 when the one that applies is invalid (stale)."""
    for key in (("s-maxage", "max-age") if shared else ("max-age",)):
        if key in directives:
            seconds = delta_seconds(directives[key])
            return 0 if seconds is None else seconds
    return None
