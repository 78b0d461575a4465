"""Just enough of an nginx configuration reader to see which locations limit their methods.

Input: one config file, or the output of ``nginx -T`` (every file after a ``# configuration file PATH:``
line). ``include`` lines inside a location are resolved against the files of the dump, so Studio's
``location /content/ { include includes/content/_proxy.conf; }`` sees the ``limit_except`` that lives in
``_proxy.conf``. Reading only: nothing is executed or written.
"""

from __future__ import annotations

import re

_FILE_MARK = re.compile(r"^# configuration file (.+?):\s*$", re.M)
_LOCATION = re.compile(r"\blocation\s+(?:(=|~\*|~|\^~)\s*)?([^\s{]+)\s*\{")
_INCLUDE = re.compile(r"^\s*include\s+([^;]+);", re.M)
_LIMIT = re.compile(r"\blimit_except\s+([A-Za-z\s]+)\{([^}]*)\}")


def split_dump(text: str) -> dict[str, str]:
    """{path: text} of an ``nginx -T`` dump ({"": text} for a plain file)."""
    marks = list(_FILE_MARK.finditer(text))
    if not marks:
        return {"": text}
    files = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        files[m.group(1).strip()] = text[m.end():end]
    return files


def _strip_comments(text: str) -> str:
    return re.sub(r"#[^\n]*", "", text)


def _block(text: str, start: int) -> str:
    """The body of the block whose ``{`` is at ``start`` (nested braces matched)."""
    depth, i = 0, start
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
        i += 1
    return text[start + 1:]


def _inline(body: str, files: dict[str, str], depth: int = 0) -> str:
    if depth > 5:
        return body

    def sub(m):
        target = m.group(1).strip().strip("\"'")
        for path, text in files.items():
            if path and (path == target or path.endswith("/" + target.lstrip("./"))):
                return _inline(_strip_comments(text), files, depth + 1)
        return m.group(0)

    return _INCLUDE.sub(sub, body)


def locations(text: str) -> list[dict]:
    """Every ``location`` block: {"modifier", "path", "proxied", "limit_except" (allowed methods or None)}."""
    files = split_dump(text)
    out = []
    for path, content in files.items():
        clean = _strip_comments(content)
        for m in _LOCATION.finditer(clean):
            body = _inline(_block(clean, m.end() - 1), files)
            limit = _LIMIT.search(body)
            allowed = None
            if limit and re.search(r"\bdeny\s+all\s*;", limit.group(2)):
                allowed = sorted(set(limit.group(1).upper().split()) | ({"HEAD"} if "GET" in limit.group(1).upper()
                                                                          else set()))
            out.append({"file": path, "modifier": m.group(1) or "", "path": m.group(2),
                        "proxied": "proxy_pass" in body, "limit_except": allowed})
    return out
