"""Which static asset to probe, found on the live deployment instead of assumed.

Every Studio ships different static files (webpack bundles with content hashes, its own images), so no
file name can be hard-coded. In order:

1. ``nginx.static_sample`` (or its older name ``nginx.static_path``): the operator's choice;
2. assets the app's own pages reference (``<script src>``, ``<link href>``, ``<img src>`` under
   ``/static/``): ``nginx.sample_page`` if set, else ``/`` (one same-site redirect followed) and the login page;
3. Django's ``ManifestStaticFilesStorage`` manifest ``/static/staticfiles.json``;
4. nginx's ``autoindex`` listing of ``/static/`` (Studio's nginx has ``autoindex on``), a few levels deep.

The answer is ``{"path", "source", "tried", "empty_listing"}``; ``path`` is "" when nothing was found,
and ``empty_listing`` is True only when nginx listed ``/static/`` and it held no file at all (proof that
collectstatic's output is missing, not a guess). Looked up once per run and base URL.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from studiodoctor import studio_facts as facts

MANIFEST = "staticfiles.json"
MAX_LISTING_DEPTH = 3
_PREFERRED = (".js", ".css", ".png", ".svg", ".woff2", ".woff", ".ico", ".jpg", ".gif")


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("src", "href") and value:
                self.refs.append(value)


def page_assets(html: str, page_url: str, prefix: str) -> list[str]:
    """Paths under ``prefix`` that an HTML page references on its own site (query strings dropped)."""
    parser = _Refs()
    try:
        parser.feed(html)
    except Exception:  # a broken page gives what was parsed so far
        pass
    site = urlsplit(page_url).netloc
    out = []
    for ref in parser.refs:
        url = urlsplit(urljoin(page_url, ref))
        if url.netloc == site and url.path.startswith(prefix) and not url.path.endswith("/") and url.path not in out:
            out.append(url.path)
    return sorted(out, key=_rank)


def listing_entries(html: str) -> list[str]:
    """The relative links of an nginx autoindex page (``../`` and absolute links left out)."""
    links = re.findall(r'<a href="([^"?#]+)"', html or "")
    return [ln for ln in links if not ln.startswith(("../", "/", "http:", "https:")) and ln not in ("./",)]


def _rank(path: str) -> tuple[int, str]:
    ext = "." + path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    return (_PREFERRED.index(ext) if ext in _PREFERRED else len(_PREFERRED), path)


def _get(ctx, base: str, path: str, cap: float = 5.0):
    from .reach import get_at

    try:
        return get_at(ctx, base, path, timeout=cap)  # a pod behind the API server, or a URL
    except Exception as exc:
        return exc


def _from_pages(ctx, base: str, prefix: str, tried: list) -> tuple[str, str]:
    nginx, app = ctx.section("nginx"), ctx.section("app")
    pages = [str(nginx["sample_page"])] if nginx.get("sample_page") else \
        ["/", str(app.get("login_path") or facts.LOGIN_PATH)]
    seen = set()
    for page in pages:
        for _ in range(2):   # the page, then one same-site redirect
            if page in seen:
                break
            seen.add(page)
            resp = _get(ctx, base, page)
            if isinstance(resp, Exception):
                tried.append(f"{page}: no answer")
                break
            location = resp.headers.get("location", "")
            if 300 <= resp.status_code < 400 and location:
                target = urlsplit(urljoin(base + page, location))
                if target.netloc and target.netloc != urlsplit(base).netloc:
                    tried.append(f"{page}: redirects off-site")
                    break
                page = target.path + (f"?{target.query}" if target.query else "")
                continue
            if resp.status_code != 200 or "html" not in resp.headers.get("content-type", ""):
                tried.append(f"{page}: HTTP {resp.status_code} {resp.headers.get('content-type', '')}".strip())
                break
            assets = page_assets(resp.text[:500_000], base + page, prefix)
            tried.append(f"{page}: {len(assets)} asset(s) under {prefix}")
            if assets:
                return assets[0], f"referenced by the app's page {page}"
            break
    return "", ""


def _from_manifest(ctx, base: str, prefix: str, tried: list) -> tuple[str, str]:
    resp = _get(ctx, base, prefix + MANIFEST)
    if isinstance(resp, Exception) or resp.status_code != 200:
        tried.append(f"{prefix}{MANIFEST}: {'no answer' if isinstance(resp, Exception) else resp.status_code}")
        return "", ""
    try:
        paths = json.loads(resp.text).get("paths") or {}
        names = sorted((str(v) for v in paths.values() if isinstance(v, str) and v), key=_rank)
    except (ValueError, AttributeError):
        names = []
    tried.append(f"{prefix}{MANIFEST}: {len(names)} file(s)")
    return (prefix + names[0].lstrip("/"), f"Django's static manifest {prefix}{MANIFEST}") if names else ("", "")


def _from_listing(ctx, base: str, prefix: str, tried: list) -> tuple[str, str, bool]:
    """(path, source, empty): walk nginx's autoindex of ``prefix`` breadth-first, a few levels deep."""
    level, depth = [prefix], 0
    while level and depth < MAX_LISTING_DEPTH and ctx.remaining() > 1.0:
        below = []
        for folder in level[:5]:
            resp = _get(ctx, base, folder)
            if isinstance(resp, Exception) or resp.status_code != 200 or "Index of" not in resp.text[:2000]:
                if folder == prefix:
                    what = "no answer" if isinstance(resp, Exception) else f"HTTP {resp.status_code}, no listing"
                    tried.append(f"{prefix} (autoindex): {what}")
                    return "", "", False
                continue
            entries = listing_entries(resp.text[:500_000])
            if folder == prefix and not entries:
                tried.append(f"{prefix} (autoindex): empty")
                return "", "", True
            files = sorted((folder + e for e in entries if not e.endswith("/")), key=_rank)
            if files:
                tried.append(f"{folder} (autoindex): {len(files)} file(s)")
                return files[0], f"nginx's autoindex of {folder}", False
            below += [folder + e for e in entries if e.endswith("/")]
        level, depth = below, depth + 1
    tried.append(f"{prefix} (autoindex): no file within {MAX_LISTING_DEPTH} levels")
    return "", "", False


def static_sample(ctx, base: str) -> dict:
    """Which asset under ``/static/`` to probe at ``base`` (see the module's docstring)."""
    nginx = ctx.section("nginx")
    configured = nginx.get("static_sample") or nginx.get("static_path")
    if configured:
        key = "nginx.static_sample" if nginx.get("static_sample") else "nginx.static_path"
        return {"path": str(configured), "source": key, "tried": [], "empty_listing": False}
    prefix = str(nginx.get("static_prefix") or facts.STATIC_PREFIX)
    prefix = prefix if prefix.endswith("/") else prefix + "/"

    def discover():
        tried: list[str] = []
        path, source = _from_pages(ctx, base, prefix, tried)
        if not path:
            path, source = _from_manifest(ctx, base, prefix, tried)
        empty = False
        if not path:
            path, source, empty = _from_listing(ctx, base, prefix, tried)
        return {"path": path, "source": source, "tried": tried, "empty_listing": empty}

    return ctx.shared.get(f"static_sample:{base}", discover)
