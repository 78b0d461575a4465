"""Layer `nginx`: Studio's internal nginx at ``nginx.url`` (the ``nginx-proxy`` sidecar, :8080).

It serves ``/static/`` from disk, proxies ``/`` to gunicorn with only ``Host`` and ``X-Forwarded-For``
(``proxy_read_timeout 100s``), proxies ``/content/storage/`` to the bucket forcing
``Cache-Control: public, max-age=31536000, immutable, no-transform``, passes Google's headers through
on other ``/content/`` paths (channel databases must stay ``private``), and allows only
GET/HEAD/OPTIONS on ``/content/`` (facts file §2).
"""

from __future__ import annotations

import mimetypes
import re
import time

from studiodoctor import studio_facts as facts
from studiodoctor.model import Command, Reason, error, fail, ok, skip, unreachable, warn
from studiodoctor.cachecontrol import max_age, parse_cache_control
from studiodoctor.registry import check

# imported by the runner before any check starts (see studiodoctor.runner.preload)
SDK_IMPORTS = ("httpx",)

REACHABLE = "nginx.reachable"
APP_PROXY = "nginx.app_proxy"
STATIC = "nginx.static"
CONTENT_STORAGE = "nginx.content_storage"
CONTENT_DATABASES = "nginx.content_databases"
CONTENT_METHODS = "nginx.content_methods"
CONTENT_LISTING = "nginx.content_listing"
HEADERS = "nginx.headers"

STUDIO_PROXY_READ_TIMEOUT_S = facts.STUDIO_PROXY_READ_TIMEOUT_S
NGINX_DEFAULT_READ_TIMEOUT_S = facts.NGINX_DEFAULT_READ_TIMEOUT_S
CLOUDFLARE_TIMEOUT_S = facts.CLOUDFLARE_TIMEOUT_S
IMMUTABLE_MAX_AGE = facts.IMMUTABLE_MAX_AGE
STORAGE_CACHE_CONTROL = facts.STORAGE_CACHE_CONTROL
DATABASE_CACHE_CONTROL = facts.DATABASE_CACHE_CONTROL
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
CACHE_STATUS_HEADERS = ("x-cache-status", "cf-cache-status", "x-cache", "x-proxy-cache")
# Response headers that say nothing about the proxy (they differ on every request or by transport).
_VOLATILE = {"date", "content-length", "connection", "keep-alive", "transfer-encoding", "age"}
# Headers whose loss or change between the app and nginx matters to users or caches.
_SENSITIVE = {"x-frame-options", "x-content-type-options", "referrer-policy", "strict-transport-security",
              "content-security-policy", "vary", "set-cookie", "cache-control", "content-type", "location",
              "expires"}


def _base(ctx) -> str:
    return str(ctx.config.get("url", "")).rstrip("/")


def _request(ctx, method: str, path: str, headers: dict | None = None, cap: float | None = None, base=None):
    """(response or None, seconds, exception or None)."""
    from studiodoctor import httpprobe

    t0 = time.monotonic()
    try:
        resp = httpprobe.request(ctx, method, (base or _base(ctx)) + path, headers=headers, timeout=cap)
        return resp, time.monotonic() - t0, None
    except Exception as exc:
        return None, time.monotonic() - t0, exc


def _commands(ctx, *extra: Command) -> list[Command]:
    from studiodoctor.kubectl import command as kubectl

    return [*extra,
            Command(kubectl(ctx.profile, "logs -l tier=frontend -c nginx-proxy --tail=100"), note="nginx's error log"),
            Command(kubectl(ctx.profile, "get pods -l tier=frontend -o name") + " | head -1 | xargs -I POD "
                    + kubectl(ctx.profile, "exec POD -c nginx-proxy -- nginx -T"),
                    note="the config nginx is running")]


def _curl(url: str, method: str = "HEAD") -> Command:
    flag = "-I" if method == "HEAD" else ""
    return Command(f"curl -sS {flag} -m 10 -A 'Studio-Internal-Prober studiodoctor' '{url}'".replace("  ", " "),
                   note="the same request by hand")


def _no_answer(ctx, path: str, exc: Exception, seconds: float, **extra):
    from studiodoctor import httpprobe

    timed_out, text = httpprobe.describe_error(exc)
    if timed_out:
        text = f"no answer within {seconds:.1f} s"
    return unreachable("nginx", _base(ctx) + path, text, timed_out=timed_out, commands=_commands(ctx),
                       hint="Is the nginx-proxy container running? It has no probes, so Kubernetes will not "
                            "restart it: read its logs.", **extra)


def _cookie_shape(headers) -> str:
    """The Set-Cookie headers without their values (session and CSRF tokens are secrets, and new on every
    request) nor their expiry (it moves with the clock): ``"csrftoken=***; Path=/; SameSite=Lax"``."""
    shapes = []
    for value in headers.get_list("set-cookie"):
        name, _, rest = value.partition("=")
        attrs = [a.strip() for a in rest.split(";")[1:] if a.strip()]
        attrs = [a for a in attrs if a.split("=", 1)[0].strip().lower() not in ("expires", "max-age")]
        shapes.append("; ".join([f"{name.strip()}=***", *attrs]))
    return ", ".join(sorted(shapes))


def _is_nginx_error_page(resp) -> bool:
    ctype = resp.headers.get("content-type", "")
    return "text/html" in ctype and b"nginx" in resp.content[:2000].lower()


def database_path(ctx) -> tuple[str, str, bool]:
    """(path of a channel database to probe, where it came from, whether the lookup itself failed):
    ``nginx.database_path`` or the first public channel of ``/api/public/v1/channels`` through nginx;
    ("", why, failed) when neither gives one."""
    configured = str(ctx.setting("database_path", ""))
    if configured:
        return configured, "nginx.database_path", False

    def discover():
        resp, _, exc = _request(ctx, "GET", "/api/public/v1/channels", cap=5.0)
        if exc is not None or resp.status_code != 200:
            status = "no answer" if exc is not None else f"HTTP {resp.status_code}"
            # no answer or a server error: we could not look; any other status: this nginx has no such API
            failed = exc is not None or resp.status_code >= 500
            return "", f"nginx.database_path is not set and /api/public/v1/channels gave {status}", failed
        try:
            channels = resp.json()
            cid = channels[0]["id"]
        except (ValueError, LookupError, TypeError):
            return "", "nginx.database_path is not set and /api/public/v1/channels lists no public channel", False
        return f"/content/databases/{cid}.sqlite3", "first public channel of /api/public/v1/channels", False

    return ctx.shared.get(f"nginx.database_path:{_base(ctx)}", discover)


# --- checks -------------------------------------------------------------------------------------------

@check(REACHABLE, title="nginx answers HTTP", needs=("nginx.url",), permissions=("HTTP HEAD",), smoke=True)
def check_reachable(ctx):
    """nginx accepts connections and answers HTTP at ``nginx.url`` (any status).

    The probe asks for ``/static/`` (or ``nginx.static_sample``), which nginx answers itself, so the answer
    does not depend on the app. If nginx does not answer, nothing in the pod does for users: the Service
    targets nginx's port 8080."""
    nginx = ctx.config
    path = str(nginx.get("static_sample") or nginx.get("static_path") or facts.STATIC_PREFIX)
    resp, seconds, exc = _request(ctx, "HEAD", path)
    if exc is not None:
        return _no_answer(ctx, path, exc, seconds)
    server = resp.headers.get("server", "")
    evidence = {"path": path, "status": resp.status_code, "server": server, "latency_s": round(seconds, 3)}
    note = "" if "nginx" in server.lower() else f" (Server header {server!r} is not nginx: is nginx.url right?)"
    return ok(f"answers HTTP {resp.status_code} in {seconds * 1000:.0f} ms{note}", evidence=evidence)


@check(APP_PROXY, title="nginx reaches the app", needs=("nginx.url",), depends_on=(REACHABLE,),
       explained_by=("app",), permissions=("HTTP GET",), smoke=True)
def check_app_proxy(ctx):
    """``/stealthz`` through nginx answers 200: nginx reaches gunicorn (``upstream studio``, :8081).

    502 means nothing answers on the upstream port (gunicorn down or crashed: see the ``app`` layer).
    504 means the app did not answer within ``proxy_read_timeout``; the time nginx took to give up
    shows the configured timeout. Studio sets 100 s to match CloudFlare; nginx's 60 s default caused
    504/524s on slow endpoints (#4336). ``nginx.proxy_read_timeout`` states the expected value."""
    resp, seconds, exc = _request(ctx, "GET", "/stealthz")
    if exc is not None:
        return _no_answer(ctx, "/stealthz", exc, seconds, evidence={"latency_s": round(seconds, 3)})
    evidence = {"status": resp.status_code, "latency_s": round(seconds, 3), "server": resp.headers.get("server", "")}
    expected = float(ctx.setting("proxy_read_timeout", STUDIO_PROXY_READ_TIMEOUT_S))
    if resp.status_code == 502:
        return fail("nginx answers 502 Bad Gateway for /stealthz: nothing answers on its upstream (gunicorn)",
                    evidence=evidence, hint="The app is down: see the app layer (gunicorn crashed, OOMKilled, "
                                            "or still starting).",
                    commands=_commands(ctx, Command("studiodoctor check --layer app", note="the app directly")))
    if resp.status_code == 504:
        inferred = int(seconds + 0.05)  # nginx gives up at a whole timeout; our overhead only adds
        evidence["inferred_proxy_read_timeout_s"] = inferred
        evidence["expected_proxy_read_timeout_s"] = expected
        note = ""
        if inferred < CLOUDFLARE_TIMEOUT_S - 5:
            note = (f"; that is below CloudFlare's {CLOUDFLARE_TIMEOUT_S:g} s, so slow requests get nginx's 504 "
                    f"before CloudFlare would answer 524")
        return fail(f"nginx answers 504 Gateway Timeout after {seconds:.1f} s: the app did not answer within "
                    f"proxy_read_timeout (about {inferred} s){note}", evidence=evidence,
                    hint="The app is too slow (see the app layer's latency). If nginx's timeout is below "
                         f"{STUDIO_PROXY_READ_TIMEOUT_S:g} s, set proxy_read_timeout 100s in location / (#4336).",
                    commands=_commands(ctx))
    if resp.status_code >= 500:
        upstream = "nginx" if _is_nginx_error_page(resp) else "the app"
        return fail(f"/stealthz through nginx answers {resp.status_code} (error page from {upstream})",
                    evidence=evidence, commands=_commands(ctx))
    if resp.status_code != 200:
        return fail(f"/stealthz through nginx answers {resp.status_code}: location / does not reach Studio",
                    evidence=evidence, commands=_commands(ctx))
    if seconds >= expected * 0.8:
        return fail(f"/stealthz through nginx took {seconds:.1f} s, near proxy_read_timeout {expected:g} s",
                    evidence=evidence, commands=_commands(ctx))
    return ok(f"/stealthz through nginx answers 200 in {seconds * 1000:.0f} ms", evidence=evidence)


@check(STATIC, title="nginx serves /static/ assets", needs=("nginx.url",), depends_on=(REACHABLE,),
       permissions=("HTTP GET",))
def check_static(ctx):
    """A static asset comes back 200 with the content type of its extension.

    nginx serves ``/static/`` from the ``staticfiles`` volume that the ``collectstatic`` init container
    fills (``alias /app/contentworkshop_static/; expires 4h``). The asset is never assumed: it is
    ``nginx.static_sample`` if set, else one the app's own pages reference (``nginx.sample_page``, default
    ``/`` and the login page), else one from Django's ``staticfiles.json`` manifest, else one from nginx's
    autoindex of ``/static/``. A 404 for such an asset, or an empty ``/static/`` listing, means collectstatic
    did not run or the volume is not shared; an HTML answer means the request fell through to Django.
    When no asset can be found the check says so (``error``) instead of guessing."""
    from studiodoctor.static_assets import static_sample

    sample = static_sample(ctx, _base(ctx))
    path = sample["path"]
    cmds = _commands(ctx, _curl(_base(ctx) + facts.STATIC_PREFIX, "GET"))
    if not path:
        evidence = {"tried": sample["tried"]}
        if sample["empty_listing"]:
            return fail(f"{facts.STATIC_PREFIX} is served but empty: collectstatic did not run or the "
                        f"staticfiles volume is not shared", evidence=evidence, commands=cmds,
                        hint="Check the collectstatic init container's logs and the nginx-proxy mount of "
                             "'staticfiles'.")
        return error(f"could not find a sample asset to probe ({'; '.join(sample['tried']) or 'nothing tried'})",
                     evidence=evidence, reason=Reason.NOT_CONFIGURED, commands=cmds,
                     hint="set nginx.static_sample to a file collectstatic ships (e.g. a <script src> of the "
                          "app's pages), or nginx.sample_page to a page that references one")
    resp, seconds, exc = _request(ctx, "GET", path)
    if exc is not None:
        return _no_answer(ctx, path, exc, seconds)
    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    expected = (mimetypes.guess_type(path)[0] or "").lower()
    evidence = {"path": path, "source": sample["source"], "status": resp.status_code, "content_type": ctype,
                "expected_type": expected, "cache_control": resp.headers.get("cache-control", ""),
                "expires": resp.headers.get("expires", ""), "server": resp.headers.get("server", ""),
                "bytes": len(resp.content)}
    cmds = _commands(ctx, _curl(_base(ctx) + path))
    if resp.status_code == 404:
        return fail(f"{path} ({sample['source']}) is missing (404): collectstatic did not run or the staticfiles "
                    f"volume is not shared", evidence=evidence, commands=cmds,
                    hint="Check the collectstatic init container's logs and the nginx-proxy mount of 'staticfiles'.")
    if resp.status_code != 200:
        return fail(f"{path} ({sample['source']}) answered {resp.status_code}", evidence=evidence, commands=cmds)
    if ctype.startswith("text/html") and expected != "text/html":
        return fail(f"{path} came back as HTML, not {expected or 'the asset'}: the request reached Django, not "
                    f"the /static/ location", evidence=evidence, commands=cmds)
    if expected and ctype != expected and not (expected.endswith("javascript") and "javascript" in ctype):
        return warn(f"{path} served as {ctype or 'no content type'}, expected {expected}", evidence=evidence,
                    hint="Check nginx's mime.types include.", commands=cmds)
    if not resp.headers.get("cache-control") and not resp.headers.get("expires"):
        return warn(f"{path} served without Cache-Control or Expires (Studio's nginx sets expires 4h)",
                    evidence=evidence, commands=cmds)
    return ok(f"{path} ({sample['source']}) served as {ctype} ({len(resp.content)} bytes, "
              f"{resp.headers.get('cache-control', '')})", evidence=evidence)


def _storage_sample(ctx):
    """The content object to probe: ``nginx.storage_path``, else the first object the gcs layer's
    credentials list under ``gcs.storage_prefix`` (``storage/x`` is served as ``/content/storage/x``).
    Returns the path, or the Result that says why there is none."""
    path = str(ctx.setting("storage_path", ""))
    if path:
        return path
    if not ctx.section("gcs").get("bucket"):
        return skip("no content object to probe: set nginx.storage_path (a /content/storage/<a>/<b>/<md5>.<ext> "
                    "path) or gcs.bucket to find one", reason=Reason.NOT_CONFIGURED,
                    hint="set nginx.storage_path, or configure the gcs layer so a real object can be listed")
    from studiodoctor.backends import gcs

    prefix = str(ctx.section("gcs").get("storage_prefix") or "storage/")
    where = f"gs://{ctx.section('gcs')['bucket']}/{prefix}"
    try:
        name = gcs.first_object(ctx, prefix)
    except Exception as exc:  # noqa: BLE001 - any SDK or transport error: we could not look
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        return error(f"could not list {where} to find a content object to probe: {first}",
                     reason=Reason.UNEXPECTED, hint="set nginx.storage_path to a known content file")
    if not name:
        return error(f"no object under {where} to probe, and nginx.storage_path is not set",
                     reason=Reason.UNEXPECTED, hint="set nginx.storage_path (or gcs.storage_prefix)")
    return "/content/" + name


@check(CONTENT_STORAGE, title="/content/storage/ is cached immutable", needs=("nginx.url",),
       depends_on=(REACHABLE,), explained_by=("gcs",), permissions=("HTTP HEAD",))
def check_content_storage(ctx):
    """A content file (``nginx.storage_path``, else one listed in the bucket) comes back 200 with the long-lived immutable Cache-Control.

    Storage URLs are md5-addressed, so nginx hides GCS's Cache-Control and Expires and adds
    ``public, max-age=31536000, immutable, no-transform`` (PR #5829) so that CloudFlare and browsers
    keep them. A 404 is the bucket's answer (missing object: see the ``gcs`` layer)."""
    path = _storage_sample(ctx)
    if not isinstance(path, str):
        return path
    resp, seconds, exc = _request(ctx, "HEAD", path)
    if exc is not None:
        return _no_answer(ctx, path, exc, seconds)
    cc_raw = resp.headers.get("cache-control", "")
    cc = parse_cache_control(cc_raw)
    evidence = {"path": path, "status": resp.status_code, "cache_control": cc_raw,
                "expires": resp.headers.get("expires", ""), "content_type": resp.headers.get("content-type", ""),
                "expected_cache_control": STORAGE_CACHE_CONTROL}
    cmds = _commands(ctx, _curl(_base(ctx) + path))
    if resp.status_code in (403, 404):
        return fail(f"{path} answered {resp.status_code} from the bucket "
                    f"({'not public' if resp.status_code == 403 else 'no such object'})", evidence=evidence,
                    commands=cmds, hint="See the gcs layer: object present, bucket publicly readable.")
    if resp.status_code >= 500:
        return fail(f"{path} answered {resp.status_code}: nginx could not get the object from the bucket",
                    evidence=evidence, commands=cmds)
    if resp.status_code != 200:
        return fail(f"{path} answered {resp.status_code}", evidence=evidence, commands=cmds)
    missing = []
    if "public" not in cc:
        missing.append("public")
    if (max_age(cc) or 0) < IMMUTABLE_MAX_AGE:
        missing.append(f"max-age>={IMMUTABLE_MAX_AGE}")
    if "immutable" not in cc:
        missing.append("immutable")
    if missing:
        return fail(f"{path} comes back with Cache-Control {cc_raw or '(none)'!r}, lacking {', '.join(missing)}: "
                    f"nginx's _cache.conf is not applied to /content/storage/", evidence=evidence, commands=cmds,
                    hint="location ^~ /content/storage/ needs proxy_hide_header Cache-Control; proxy_hide_header "
                         f"Expires; add_header Cache-Control \"{STORAGE_CACHE_CONTROL}\".")
    if resp.headers.get("expires"):
        return warn(f"{path} also carries Expires {resp.headers['expires']!r} (nginx should hide it)",
                    evidence=evidence, commands=cmds)
    if not cc.get("no-transform"):
        return warn(f"{path} Cache-Control lacks no-transform", evidence=evidence, commands=cmds)
    return ok(f"{path}: 200, Cache-Control {cc_raw!r}", evidence=evidence)


@check(CONTENT_DATABASES, title="/content/databases/ stays private and uncached", needs=("nginx.url",),
       depends_on=(REACHABLE,), explained_by=("gcs",), permissions=("HTTP HEAD",))
def check_content_databases(ctx):
    """A channel database comes back ``private`` and never as a cache HIT (asked twice).

    Channel databases (``databases/<channel_id>.sqlite3``) are overwritten on every publish; Studio uploads
    them with ``private, max-age=5, no-transform`` and nginx must pass that through. A public
    Cache-Control or an nginx/CloudFlare cache HIT serves Kolibri stale channel versions (incident 2019,
    PR #1707). The object is ``nginx.database_path`` or the first public channel's database."""
    path, source, failed = database_path(ctx)
    if not path and failed:
        return error(f"could not find a channel database to probe: {source}", reason=Reason.UNEXPECTED,
                     hint="set nginx.database_path in the profile's config (the app behind nginx did not list "
                          "the public channels: see nginx.app_proxy)")
    if not path:
        return skip(source, reason=Reason.NOT_CONFIGURED, hint="set nginx.database_path in the profile's config")
    rows = []
    for _ in range(2):  # a cache in the way stores the first answer and HITs on the second
        resp, seconds, exc = _request(ctx, "HEAD", path)
        if exc is not None:
            return _no_answer(ctx, path, exc, seconds)
        rows.append(resp)
    first, second = rows
    cc_raw = second.headers.get("cache-control", "")
    cc = parse_cache_control(cc_raw)
    hits = {h: r.headers.get(h) for r in rows for h in CACHE_STATUS_HEADERS if r.headers.get(h)}
    evidence = {"path": path, "source": source, "status": second.status_code, "cache_control": cc_raw,
                "content_encoding": second.headers.get("content-encoding", ""), "cache_status": hits,
                "expected_cache_control": DATABASE_CACHE_CONTROL}
    cmds = _commands(ctx, _curl(_base(ctx) + path))
    if second.status_code in (403, 404):
        return fail(f"{path} answered {second.status_code} from the bucket", evidence=evidence, commands=cmds,
                    hint="See the gcs layer: the channel database should exist and be publicly readable.")
    if second.status_code != 200:
        return fail(f"{path} answered {second.status_code}", evidence=evidence, commands=cmds)
    hit = [f"{h}: {v}" for h, v in hits.items() if str(v).upper() in ("HIT", "STALE", "UPDATING", "REVALIDATED")]
    if hit:
        return fail(f"{path} was served from a cache ({', '.join(hit)}): Kolibri can get a stale channel version",
                    evidence=evidence, commands=cmds,
                    hint="Remove proxy_cache from the /content/ location (and any CloudFlare cache rule for "
                         "/content/databases/); databases must pass GCS's private Cache-Control through.")
    if "public" in cc or not ("private" in cc or "no-store" in cc or "no-cache" in cc):
        return fail(f"{path} comes back with Cache-Control {cc_raw or '(none)'!r}: shared caches may keep a "
                    f"channel database across publishes", evidence=evidence, commands=cmds,
                    hint="nginx must not add or override Cache-Control on /content/ other than storage/, and the "
                         f"object must be uploaded with {DATABASE_CACHE_CONTROL!r} (gcs layer).")
    return ok(f"{path}: Cache-Control {cc_raw!r}, no cache HIT", evidence=evidence)


@check(CONTENT_METHODS, title="/content/ refuses writes", needs=("nginx.url",), depends_on=(REACHABLE,),
       permissions=("HTTP OPTIONS", "reads nginx.config_file if set"))
def check_content_methods(ctx):
    """Every ``/content/`` location that proxies to the bucket allows only GET, HEAD and OPTIONS.

    Studio's ``_proxy.conf`` has ``limit_except GET HEAD OPTIONS { deny all; }``: writes never reach the
    bucket through nginx. studiodoctor never sends a write to find out. nginx lets OPTIONS through that
    limit, so no read-only request shows it: the check reads ``nginx.config_file`` (a copy of the running
    config, e.g. ``kubectl exec ... -c nginx-proxy -- nginx -T > nginx-T.txt``; includes are followed)
    and warns for each content location without the limit (the bucket still refuses anonymous writes, so
    this is a warning, not an outage). Without the file it sends an OPTIONS and warns only if the answer's
    ``Allow`` names a write method; otherwise it skips, saying what to set."""
    path = facts.CONTENT_DATABASES_PREFIX + "studiodoctor-options-probe.sqlite3"
    manual = _commands(ctx)   # the last one prints the running config (nginx -T)
    config_file = str(ctx.setting("config_file", ""))
    if config_file:
        return _methods_from_config(ctx, config_file, manual)
    resp, seconds, exc = _request(ctx, "OPTIONS", path)
    if exc is not None:
        return _no_answer(ctx, path, exc, seconds)
    allow = resp.headers.get("allow", "")
    cors = resp.headers.get("access-control-allow-methods", "")
    evidence = {"path": path, "method": "OPTIONS", "status": resp.status_code, "allow": allow,
                "access_control_allow_methods": cors}
    advertised = [m for m in WRITE_METHODS if m in allow.upper().replace(" ", "").split(",")]
    if advertised:
        return warn(f"OPTIONS {path} answers Allow: {allow}: writes ({', '.join(advertised)}) are offered through "
                    f"nginx", evidence=evidence, commands=manual,
                    hint="Add limit_except GET HEAD OPTIONS { deny all; } to every /content/ location "
                         "(includes/content/_proxy.conf).")
    return skip(f"nginx's method limit is not visible to a read-only probe (OPTIONS {path} answered "
                f"{resp.status_code}{', Allow: ' + allow if allow else ', no Allow header'}): set nginx.config_file "
                f"to the output of `nginx -T` to verify limit_except", evidence=evidence,
                reason=Reason.NOT_CONFIGURED, commands=manual)


def _methods_from_config(ctx, config_file: str, manual: list[Command]):
    """The content_methods verdict from a copy of nginx's config."""
    import os

    from studiodoctor import nginx_conf

    try:
        with open(os.path.expanduser(config_file), encoding="utf-8", errors="replace") as fh:
            text = fh.read(5_000_000)
    except OSError as exc:
        return error(f"nginx.config_file {config_file} cannot be read: {exc.strerror or exc}",
                     reason=Reason.NOT_CONFIGURED, hint="point nginx.config_file at a saved `nginx -T` output")
    content = [loc for loc in nginx_conf.locations(text)
               if loc["path"].startswith(facts.CONTENT_PREFIX) and loc["proxied"]]
    allowed = set(facts.CONTENT_ALLOWED_METHODS)
    open_locs = [loc for loc in content if loc["limit_except"] is None or not set(loc["limit_except"]) <= allowed]
    evidence = {"config_file": config_file, "content_locations": [
        {"location": f"{loc['modifier']} {loc['path']}".strip(), "limit_except": loc["limit_except"]}
        for loc in content]}
    if not content:
        return error(f"nginx.config_file {config_file} has no /content/ location that proxies: is it the "
                     f"nginx-proxy's `nginx -T` output?", evidence=evidence, reason=Reason.UNEXPECTED, commands=manual)
    if open_locs:
        names = ", ".join(f"location {loc['modifier']} {loc['path']}".replace("  ", " ") for loc in open_locs)
        return warn(f"{len(open_locs)} of {len(content)} /content/ locations do not limit methods to "
                    f"GET/HEAD/OPTIONS ({names}): writes are passed to the bucket", evidence=evidence,
                    commands=manual,
                    hint="Add limit_except GET HEAD OPTIONS { deny all; } to every /content/ location "
                         "(includes/content/_proxy.conf).")
    return ok(f"all {len(content)} /content/ locations allow only GET/HEAD/OPTIONS (limit_except, from "
              f"{config_file})", evidence=evidence)


@check(CONTENT_LISTING, title="/content/ does not list the bucket", needs=("nginx.url",),
       depends_on=(REACHABLE,), explained_by=("gcs",), permissions=("HTTP GET",))
def check_content_listing(ctx):
    """``GET /content/`` must not return the bucket's object listing.

    nginx has no guard on the bare ``/content/`` (attempts were reverted, #1838): protection relies on the
    bucket refusing anonymous ``storage.objects.list``. A listing leaks every channel's files and ids."""
    resp, seconds, exc = _request(ctx, "GET", "/content/")
    if exc is not None:
        return _no_answer(ctx, "/content/", exc, seconds)
    body = resp.text[:200000]
    keys = re.findall(r"<Key>([^<]*)</Key>", body)
    listing = "<ListBucketResult" in body or '"storage#objects"' in body
    evidence = {"status": resp.status_code, "content_type": resp.headers.get("content-type", ""),
                "listed_objects": len(keys), "sample": keys[:3]}
    if not listing and resp.status_code >= 500:
        return error(f"GET /content/ answered {resp.status_code}: cannot tell whether the bucket's listing is "
                     f"exposed (nginx did not get the bucket's answer)", evidence=evidence,
                     commands=_commands(ctx, _curl(_base(ctx) + "/content/", "GET")),
                     hint="See nginx.content_storage and the gcs layer: nginx must reach the bucket first.")
    if not listing and resp.status_code == 404:
        return error("GET /content/ answered 404: neither a listing nor a refusal, so it says nothing about the "
                     "bucket (is /content/ proxied to the right bucket?)", evidence=evidence,
                     reason=Reason.NOT_CONFIGURED, commands=_commands(ctx, _curl(_base(ctx) + "/content/", "GET")),
                     hint="Check nginx's /content/ location and AWS_BUCKET_NAME; the gcs layer's "
                          "gcs.listing_not_public asks the bucket directly.")
    if listing:
        return fail(f"GET /content/ lists the bucket ({len(keys)} objects shown, e.g. {keys[:1]})",
                    evidence=evidence, commands=_commands(ctx, _curl(_base(ctx) + "/content/", "GET")),
                    hint="Remove allUsers storage.objects.list (roles/storage.legacyBucketReader or objectViewer "
                         "at bucket level grants it) or deny the bare /content/ in nginx.")
    return ok(f"GET /content/ answers {resp.status_code} without a listing", evidence=evidence)


@check(HEADERS, title="Headers nginx drops, adds or changes", needs=("nginx.url", "app.url"),
       depends_on=(REACHABLE,), explained_by=("app",), permissions=("HTTP GET",))
def check_headers(ctx):
    """The same request (``nginx.compare_path``, default the login page) at nginx and at the app directly:
    response headers nginx drops, adds or changes are evidence.

    Expected: ``Server`` changes to nginx, nothing else of the app's is lost. Warns when nginx drops a
    security or caching header the app sent, or adds/changes Cache-Control or Vary on app responses.
    (nginx sends Django only ``Host`` and ``X-Forwarded-For``: no ``X-Forwarded-Proto``, so Django's
    ``request.is_secure()`` is False behind the proxies.)"""
    path = str(ctx.setting("compare_path", str(ctx.section("app").get("login_path") or "/en/accounts/")))
    app_base = str(ctx.section("app").get("url", "")).rstrip("/")
    via_app, s_app, e_app = _request(ctx, "GET", path, base=app_base, cap=max(1.0, ctx.timeout() / 2))
    via_nginx, s_nginx, e_nginx = _request(ctx, "GET", path)
    if e_nginx is not None:
        return _no_answer(ctx, path, e_nginx, s_nginx)
    if e_app is not None:
        from studiodoctor import httpprobe

        return error(f"could not compare headers: the app at {app_base} gave no answer "
                     f"({httpprobe.describe_error(e_app)[1]})", reason=Reason.UNREACHABLE,
                     evidence={"nginx_status": via_nginx.status_code})
    if via_nginx.status_code >= 500 or via_app.status_code >= 500:
        return error(f"could not compare headers: {path} answered {via_nginx.status_code} at nginx and "
                     f"{via_app.status_code} at the app", reason=Reason.UNEXPECTED,
                     evidence={"nginx_status": via_nginx.status_code, "app_status": via_app.status_code})
    a = {k.lower(): v for k, v in via_app.headers.items() if k.lower() not in _VOLATILE}
    n = {k.lower(): v for k, v in via_nginx.headers.items() if k.lower() not in _VOLATILE}
    for headers, resp in ((a, via_app), (n, via_nginx)):
        if "set-cookie" in headers:
            headers["set-cookie"] = _cookie_shape(resp.headers)
    dropped = sorted(set(a) - set(n))
    added = {k: n[k] for k in sorted(set(n) - set(a))}
    changed = {k: {"app": a[k], "nginx": n[k]} for k in sorted(set(a) & set(n)) if a[k] != n[k]}
    evidence = {"path": path, "app_status": via_app.status_code, "nginx_status": via_nginx.status_code,
                "dropped": dropped, "added": added, "changed": changed}
    worrying = ([f"dropped {h}" for h in dropped if h in _SENSITIVE] +
                [f"added {h}: {v}" for h, v in added.items() if h in ("cache-control", "vary", "set-cookie")] +
                [f"changed {h}" for h in changed if h in _SENSITIVE and h != "server"])
    if via_app.status_code != via_nginx.status_code:
        worrying.append(f"status {via_app.status_code} at the app but {via_nginx.status_code} at nginx")
    if worrying:
        return warn(f"nginx alters the app's answer for {path}: {'; '.join(worrying)}", evidence=evidence,
                    commands=_commands(ctx))
    summary = (f"{path}: nginx passes the app's headers through (dropped {len(dropped)}, added {len(added)}, "
               f"changed {', '.join(changed) or 'none'})")
    return ok(summary, evidence=evidence)
