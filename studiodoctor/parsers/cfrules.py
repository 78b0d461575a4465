"""A small evaluator for CloudFlare's Rules language (the subset cache rules use): ``matches(expression,
fields)`` says whether a rule's expression matches a request (``request_fields(host, path)``), and raises
``Undecidable`` for what it cannot decide from the request alone (ip.src, cf.* fields...). Engine code,
used by the cloudflare layer's ``cloudflare.cache_rules``."""

from __future__ import annotations

import fnmatch
import re


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
