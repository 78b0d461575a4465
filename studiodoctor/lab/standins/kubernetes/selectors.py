"""Label and field selectors as the real API server parses them (``?labelSelector=`` and ``?fieldSelector=``).

Label selectors follow k8s.io/apimachinery ``labels.Parse``: a lexer over ``= == != ! ( ) , > <`` and the
keywords ``in``/``notin`` (which are plain values inside a value list), then requirements joined by
``,``::

    <requirement> ::= [!] KEY [ ("in" | "notin") "(" VALUES ")" | ("=" | "==" | "!=" | ">" | "<") VALUE ]

``KEY`` a qualified name (``[DNS subdomain "/"] name``, the name at most 63 characters), ``VALUE`` at most
63 characters of ``[A-Za-z0-9_.-]`` starting and ending alphanumeric (or empty); ``>``/``<`` take an
integer. ``!=`` and ``notin`` match objects without the key; ``in`` and ``=`` need it.

Field selectors follow ``fields.ParseSelector``: terms split on unescaped ``,``, each ``field=value``,
``field==value`` or ``field!=value`` split at the first operator, the value unescaped (``\\\\``, ``\\,``,
``\\=``); and, as the API server does per resource, only the fields that resource supports (every
resource: ``metadata.name``, ``metadata.namespace``; pods and events a few more). Anything else is the
API server's 400 BadRequest, whose message :class:`SelectorError` carries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class SelectorError(ValueError):
    """A selector the API server would refuse (400 BadRequest with this message)."""


# -- label selectors: the lexer ---------------------------------------------------------------------
_KEYWORDS = {")": ")", ",": ",", "!": "!", "==": "==", "=": "=", ">": ">", "in": "in", "<": "<", "!=": "!=",
             "notin": "notin", "(": "("}
_SPECIAL = set("=!(),><")
_SPACE = set(" \t\r\n")
ID, END, ERROR = "identifier", "end of string", "error"


def _lex(text: str) -> list[tuple[str, str]]:
    """(token, literal) pairs ending with END, as labels.Lexer scans them."""
    items, pos, n = [], 0, len(text)
    while True:
        while pos < n and text[pos] in _SPACE:
            pos += 1
        if pos >= n:
            items.append((END, ""))
            return items
        if text[pos] in _SPECIAL:  # the longest operator that is a keyword
            buffer, last = "", None
            while pos < n and text[pos] in _SPECIAL:
                buffer += text[pos]
                pos += 1
                if buffer in _KEYWORDS:
                    last = buffer
                elif last is not None:
                    pos -= 1
                    break
            if last is None:
                items.append((ERROR, f"error expected: keyword found '{buffer}'"))
                pos = n
                continue
            items.append((_KEYWORDS[last], last))
            continue
        start = pos
        while pos < n and text[pos] not in _SPECIAL and text[pos] not in _SPACE:
            pos += 1
        word = text[start:pos]
        items.append((_KEYWORDS[word], word) if word in _KEYWORDS else (ID, word))


# -- label selectors: validation (apimachinery's validation messages) -------------------------------
_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_NAME = re.compile(f"^{_NAME_FMT}$")
_VALUE_FMT = f"({_NAME_FMT})?"
_DNS1123_FMT = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS1123 = re.compile(f"^{_DNS1123_FMT}$")


def _regex_error(message: str, fmt: str, *examples: str) -> str:
    shown = ",  or ".join(f"'{e}'" for e in examples)
    return f"{message} (e.g. {shown}, regex used for validation is '{fmt}')"


def _key_errors(key: str) -> list[str]:
    parts = key.split("/")
    if len(parts) == 1:
        name, prefix = parts[0], None
    elif len(parts) == 2:
        prefix, name = parts
    else:
        return ["a qualified name " + _regex_error(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character", _NAME_FMT, "MyName", "my.name",
            "123-abc") + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    errors = []
    if prefix == "":
        errors.append("prefix part must be non-empty")
    elif prefix is not None:
        if len(prefix) > 253:
            errors.append("prefix part must be no more than 253 characters")
        if not _DNS1123.match(prefix):
            errors.append("prefix part " + _regex_error(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                "and must start and end with an alphanumeric character", _DNS1123_FMT, "example.com"))
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    if not _NAME.match(name):
        errors.append("name part " + _regex_error(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character", _NAME_FMT, "MyName", "my.name", "123-abc"))
    return errors


def _value_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if value and not _NAME.match(value):
        errors.append(_regex_error("a valid label must be an empty string or consist of alphanumeric characters, "
                                   "'-', '_' or '.', and must start and end with an alphanumeric character",
                                   _VALUE_FMT, "MyValue", "my_value", "12345"))
    return errors


def _invalid(path: str, value: str, errors: list[str]) -> str:
    return f'{path}: Invalid value: "{value}": ' + "; ".join(errors)


# -- label selectors: the parser --------------------------------------------------------------------
@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str           # in notin = == != > < exists !
    values: tuple[str, ...] = ()

    def matches(self, labels: dict) -> bool:
        """labels.Requirement.Matches."""
        has = self.key in labels
        value = labels.get(self.key)
        if self.operator in ("in", "=", "=="):
            return has and value in self.values
        if self.operator in ("notin", "!="):
            return not has or value not in self.values
        if self.operator == "exists":
            return has
        if self.operator == "!":
            return not has
        try:  # > <: both sides integers, else no match
            mine, theirs = int(value), int(self.values[0])
        except (TypeError, ValueError):
            return False
        return mine > theirs if self.operator == ">" else mine < theirs


BINARY_OPERATORS = "in, notin, =, ==, !=, gt, lt"


class _Parser:
    def __init__(self, text: str):
        self.items, self.position = _lex(text), 0

    def _token(self, index: int, values: bool) -> tuple[str, str]:
        tok, lit = self.items[index]
        if values and tok in ("in", "notin"):  # a keyword where a value is expected is a value
            tok = ID
        return tok, lit

    def lookahead(self, values: bool = True) -> tuple[str, str]:
        return self._token(self.position, values)

    def consume(self, values: bool = True) -> tuple[str, str]:
        self.position += 1
        return self._token(self.position - 1, values)

    def parse(self) -> list[Requirement]:
        requirements = []
        while True:
            tok, lit = self.lookahead()
            if tok == END:
                return requirements
            if tok not in (ID, "!"):
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self.requirement())
            except SelectorError as exc:
                raise SelectorError(f"unable to parse requirement: {exc}") from None
            tok, lit = self.consume()
            if tok == END:
                return requirements
            if tok != ",":
                raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            nxt, lit2 = self.lookahead()
            if nxt not in (ID, "!"):
                raise SelectorError(f"found '{lit2}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        operator = ""
        tok, lit = self.consume()
        if tok == "!":
            operator = "!"
            tok, lit = self.consume()
        if tok != ID:
            raise SelectorError(f"found '{lit}', expected: identifier")
        key = lit
        errors = _key_errors(key)
        if errors:
            raise SelectorError(_invalid("<nil>", key, errors))
        if operator == "!" or self.lookahead()[0] in (END, ","):  # "!key": whatever follows is the next term's
            return Requirement(key, operator or "exists")
        tok, lit = self.consume(values=False)
        if tok not in ("in", "notin", "=", "==", "!=", ">", "<"):
            raise SelectorError(f"found '{lit}', expected: {BINARY_OPERATORS}")
        values = self.value_set() if tok in ("in", "notin") else self.exact_value()
        return _requirement(key, tok, values)

    def value_set(self) -> list[str]:
        tok, lit = self.consume()
        if tok != "(":
            raise SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead()
        if tok == ")":
            self.consume()
            return [""]
        if tok not in (ID, ","):
            raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")
        values: set[str] = set()
        while True:
            tok2, lit2 = self.consume()
            if tok2 == ID:
                values.add(lit2)
                nxt, lit3 = self.lookahead()
                if nxt == ",":
                    continue
                if nxt == ")":
                    break
                raise SelectorError(f"found '{lit3}', expected: ',' or ')'")
            if tok2 == ",":
                if not values:
                    values.add("")
                nxt = self.lookahead()[0]
                if nxt == ")":
                    values.add("")
                    break
                if nxt == ",":
                    values.add("")
                continue
            raise SelectorError(f"found '{lit2}', expected: ',', or identifier")
        if self.consume()[0] != ")":
            raise SelectorError(f"found '{lit}', expected: ')'")
        return sorted(values)

    def exact_value(self) -> list[str]:
        tok, _ = self.lookahead()
        if tok in (END, ","):
            return [""]
        tok, lit = self.consume()
        if tok == ID:
            return [lit]
        raise SelectorError(f"found '{lit}', expected: identifier")


def _requirement(key: str, operator: str, values: list[str]) -> Requirement:
    """labels.NewRequirement's checks of the values."""
    errors = []
    if operator in (">", "<"):
        for i, v in enumerate(values):
            if not re.fullmatch(r"[+-]?\d+", v):
                errors.append(_invalid(f"values[{i}]", v, ["for 'Gt', 'Lt' operators, the value must be an integer"]))
    for i, v in enumerate(values):
        bad = _value_errors(v)
        if bad:
            errors.append(_invalid(f"values[{i}][{key}]", v, bad))
    if errors:
        raise SelectorError(errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]")
    return Requirement(key, operator, tuple(values))


def parse_labels(selector: str) -> list[Requirement]:
    """The requirements of a label selector (ANDed), or SelectorError with the API server's message."""
    return sorted(_Parser(selector).parse(), key=lambda r: r.key)


def labels_match(requirements: list[Requirement], labels: dict) -> bool:
    return all(r.matches(labels) for r in requirements)


# -- field selectors ----------------------------------------------------------------------------------
def _split_terms(selector: str) -> list[str]:
    terms, start, escaped = [], 0, False
    for i, c in enumerate(selector):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ",":
            terms.append(selector[start:i])
            start = i + 1
    terms.append(selector[start:])
    return terms


def _unescape(value: str) -> str:
    if not any(c in value for c in "\\,="):
        return value
    out, escaped = [], False
    for c in value:
        if escaped:
            if c not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: {value}")
            out.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c in ",=":
            raise SelectorError(f"invalid field selector: unescaped character in value: {c}")
        else:
            out.append(c)
    if escaped:
        raise SelectorError(f"invalid field selector: invalid escape sequence: {value}")
    return "".join(out)


def _text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else ("" if value is None else str(value))


def _dotted(obj: dict, path: str):
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


# resource -> field label -> how to read it (the API server's field label conversions)
_META = {"metadata.name": "metadata.name", "metadata.namespace": "metadata.namespace"}
FIELDS = {
    "pods": {**_META, **{f: f for f in ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                                         "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                                         "status.podIP", "status.nominatedNodeName")}},
    "events": {**_META, **{f"involvedObject.{f}": f"involvedObject.{f}"
                           for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion",
                                     "fieldPath")},
               "reason": "reason", "reportingComponent": "reportingComponent", "source": "source.component",
               "type": "type"},
}


def parse_fields(selector: str, resource: str) -> list[tuple[str, bool, str]]:
    """(field, equal?, value) terms of a field selector, or SelectorError as the API server answers."""
    terms = []
    for part in sorted(_split_terms(selector)):
        if not part:
            continue
        for i in range(len(part)):
            op = next((o for o in ("!=", "==", "=") if part.startswith(o, i)), None)
            if op:
                lhs, rhs = part[:i], part[i + len(op):]
                break
        else:
            raise SelectorError(f"invalid selector: '{selector}'; can't understand '{part}'")
        if lhs not in FIELDS.get(resource, _META):
            raise SelectorError(f'"{lhs}" is not a known field selector: only "metadata.name", "metadata.namespace"'
                                if resource not in FIELDS else f"field label not supported: {lhs}")
        terms.append((lhs, op != "!=", _unescape(rhs)))
    return terms


def fields_match(terms: list[tuple[str, bool, str]], obj: dict, resource: str) -> bool:
    table = FIELDS.get(resource, _META)
    return all((_text(_dotted(obj, table[f])) == v) == equal for f, equal, v in terms)
