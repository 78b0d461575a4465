"""nginx.* on a real nginx configured like Studio's internal one (facts file §2), in front of the stand-in
app under real gunicorn and fake-gcs-server; faults flip the config and reload nginx."""

from __future__ import annotations

import pytest
from studio_stack import *  # noqa: F401,F403  (fixtures: seeded, stack)
from studio_stack import DB_OBJECT, STORAGE_OBJECT, likely_cause, run

from checks.django_app import HEALTHZ, STEALTHZ
from checks.nginx import (APP_PROXY, CONTENT_DATABASES, CONTENT_LISTING, CONTENT_METHODS, CONTENT_STORAGE,
                          HEADERS, REACHABLE, STATIC)
from checks.trace import TRACE
from studiodoctor.lab.servers.studio_nginx import STATIC_SAMPLE
from studiodoctor import engine
from studiodoctor.model import Status

NGINX_IDS = (REACHABLE, APP_PROXY, STATIC, CONTENT_STORAGE, CONTENT_DATABASES, CONTENT_METHODS, CONTENT_LISTING,
             HEADERS)


def test_healthy_stack_is_ok_everywhere(stack, make_profile):
    res = run(make_profile, stack.sections())
    bad = {cid: (r.status.value, r.summary) for cid, r in res.items() if r.status is not Status.OK}
    assert not bad
    assert res[REACHABLE].evidence["server"].startswith("nginx/")
    assert res[STATIC].evidence["content_type"] == "image/png"
    assert res[STATIC].evidence["cache_control"] == "max-age=14400"          # expires 4h
    assert res[CONTENT_STORAGE].evidence["cache_control"] == "public, max-age=31536000, immutable, no-transform"
    assert res[CONTENT_DATABASES].evidence["cache_control"] == "private, max-age=5, no-transform"
    assert res[CONTENT_DATABASES].evidence["content_encoding"] == "gzip"
    assert [loc["limit_except"] for loc in res[CONTENT_METHODS].evidence["content_locations"]] == \
        [["GET", "HEAD", "OPTIONS"]] * 2
    headers = res[HEADERS].evidence
    assert headers["changed"]["server"] == {"app": "gunicorn", "nginx": headers["changed"]["server"]["nginx"]}
    assert headers["dropped"] == [] and headers["app_status"] == headers["nginx_status"] == 200
    assert res[TRACE].evidence["first_bad_hop"] is None


def test_nginx_stopped(stack, make_profile):
    stack.nginx.stop()
    res = run(make_profile, stack.sections())
    assert res[REACHABLE].status is Status.FAIL
    assert "unreachable from here: connection refused" in res[REACHABLE].summary
    for cid in NGINX_IDS[1:]:
        assert res[cid].status is Status.BLOCKED and res[cid].blocked_by == [REACHABLE], cid
    assert res[STEALTHZ].status is Status.OK and res[HEALTHZ].status is Status.OK
    assert res[TRACE].status is Status.FAIL
    assert res[TRACE].evidence["first_bad_hop"] == "nginx"
    assert res[TRACE].evidence["bad_at"] == {"/stealthz": "nginx", STATIC_SAMPLE: "nginx",
                                             f"/content/{STORAGE_OBJECT}": "nginx"}
    assert likely_cause(make_profile, stack.sections()) == ("nginx", REACHABLE)


def test_databases_served_with_public_cache_control(stack, make_profile):
    stack.nginx.set_fault("databases_public")
    res = run(make_profile, stack.sections(), layers=["nginx", "trace"])
    dbs = res[CONTENT_DATABASES]
    assert dbs.status is Status.FAIL
    assert dbs.evidence["cache_control"] == "public, max-age=3600"
    assert f"/content/{DB_OBJECT}" in dbs.summary
    assert res[CONTENT_STORAGE].status is Status.OK
    assert res[TRACE].status is Status.OK          # the answers are 200s: a caching fault, not a 502
    assert likely_cause(make_profile, stack.sections(), "caching") == ("nginx", CONTENT_DATABASES)


def test_databases_cached_by_nginx_is_a_hit(stack, make_profile):
    stack.nginx.set_fault("databases_cached")
    res = run(make_profile, stack.sections(), layers=["nginx"])
    dbs = res[CONTENT_DATABASES]
    assert dbs.status is Status.FAIL
    assert dbs.evidence["cache_status"] == {"x-cache-status": "HIT"}
    assert "served from a cache (x-cache-status: HIT)" in dbs.summary


def _methods_seen(stack) -> set[str]:
    """The request methods nginx logged (its access log: '"GET /path HTTP/1.1"')."""
    import re

    log = (stack.nginx.dir / "logs" / "access.log").read_text()
    return set(re.findall(r'"([A-Z]+) /', log))


def test_post_allowed_on_content_warns(stack, make_profile):
    """The missing limit_except is read from the config (nginx -T), never tested with a write."""
    stack.nginx.set_fault("post_allowed")
    res = run(make_profile, stack.sections(), layers=["nginx", "trace"])
    methods = res[CONTENT_METHODS]
    assert methods.status is Status.WARN, methods.summary
    assert "2 of 2 /content/ locations do not limit methods" in methods.summary
    assert "location ^~ /content/storage/" in methods.summary and "location /content/)" in methods.summary
    assert res[TRACE].evidence["first_bad_hop"] is None
    # a write method let through does not explain content failing to load: a warn, never the likely cause
    assert likely_cause(make_profile, stack.sections(), "content") == (None, None)
    assert _methods_seen(stack) <= {"GET", "HEAD", "OPTIONS"}


def test_content_methods_never_writes_and_says_what_to_set(stack, make_profile):
    """Without a config copy, OPTIONS cannot show nginx's limit (limit_except lets OPTIONS through to the
    bucket, with or without the limit): the check skips naming nginx.config_file and sends no write."""
    sections = stack.sections()
    del sections["nginx"]["config_file"]
    for fault in (False, True):
        stack.nginx.set_fault("post_allowed", fault)
        r = run(make_profile, sections, layers=["nginx"])[CONTENT_METHODS]
        assert r.status is Status.SKIP, r.summary
        assert "nginx.config_file" in r.summary and r.evidence["method"] == "OPTIONS"
    assert _methods_seen(stack) <= {"GET", "HEAD", "OPTIONS"}
    assert "OPTIONS" in _methods_seen(stack)


def test_content_methods_reads_includes_of_an_nginx_T_dump(tmp_path, make_profile):
    """Studio keeps limit_except in includes/content/_proxy.conf; `nginx -T` prints it as its own file."""
    from studiodoctor.parsers import nginx_conf

    dump = """# configuration file /etc/nginx/nginx.conf:
http { server { listen 8080;
  location /static/ { alias /app/contentworkshop_static/; }
  include /etc/nginx/includes/content.conf;
} }

# configuration file /etc/nginx/includes/content.conf:
location ^~ /content/storage/ { include /etc/nginx/includes/content/_proxy.conf; rewrite ^/content/(.*)$ /$1 break; }
location /content/ { proxy_pass https://studio-content.storage.googleapis.com; }

# configuration file /etc/nginx/includes/content/_proxy.conf:
limit_except GET HEAD OPTIONS { deny all; }  # writes -> 403
proxy_pass https://studio-content.storage.googleapis.com;
"""
    found = {loc["path"]: loc["limit_except"] for loc in nginx_conf.locations(dump)}
    assert found == {"/static/": None, "/content/storage/": ["GET", "HEAD", "OPTIONS"], "/content/": None}


@pytest.mark.parametrize("fault, cid, needle", [
    ("storage_uncached", CONTENT_STORAGE, "lacking max-age>=31536000, immutable"),
    ("bucket_listing", CONTENT_LISTING, "lists the bucket"),
    ("static_missing", STATIC, "missing (404)"),
])
def test_other_nginx_faults_fail_their_check(stack, make_profile, fault, cid, needle):
    stack.nginx.set_fault(fault)
    res = run(make_profile, stack.sections(), layers=["nginx"])
    assert res[cid].status is Status.FAIL, res[cid].summary
    assert needle in res[cid].summary
    stack.nginx.set_fault(fault, on=False)
    assert run(make_profile, stack.sections(), layers=["nginx"])[cid].status is Status.OK


def test_database_path_discovered_from_public_channels(stack, seeded, make_profile):
    pg, _ = seeded
    from studiodoctor.lab import studio_schema

    pg.execute(f"UPDATE {studio_schema.CHANNEL_TABLE} SET public = true WHERE id = %s",
               (studio_schema.LAB_CHANNEL_ID,))
    try:
        sections = stack.sections()
        del sections["nginx"]["database_path"]
        res = run(make_profile, sections, layers=["nginx"])
    finally:
        pg.execute(f"UPDATE {studio_schema.CHANNEL_TABLE} SET public = false WHERE id = %s",
                   (studio_schema.LAB_CHANNEL_ID,))
    dbs = res[CONTENT_DATABASES]
    assert dbs.evidence["path"] == f"/content/databases/{studio_schema.LAB_CHANNEL_ID}.sqlite3"
    assert dbs.evidence["source"].startswith("a channel of the public channel API at http://127.0.0.1:")
    assert dbs.status is Status.FAIL and dbs.evidence["status"] == 404     # the lab bucket has no such object


def test_headers_never_carry_cookie_values(make_profile):
    """Django's login page sets a fresh csrftoken (a session cookie once logged in) on every answer: the
    comparison keeps the cookies' names and attributes, never their values (secrets, new every time)."""
    import json
    import secrets
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    tokens = []

    def handler(server_name):
        class Page(BaseHTTPRequestHandler):
            def _answer(self, body=b""):
                token = secrets.token_hex(16)
                tokens.append(token)
                self.send_response(200)
                self.send_header("Server", server_name)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Set-Cookie", f"csrftoken={token}; expires=Sat, 27 Nov 2027 10:00:{len(tokens) % 60:02d} "
                                               "GMT; Max-Age=31449600; Path=/; SameSite=Lax")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._answer(b"<html>Sign in</html>")

            def do_HEAD(self):
                self._answer()

            def log_message(self, *args):
                pass

        return Page

    servers = [ThreadingHTTPServer(("127.0.0.1", 0), handler(name)) for name in ("gunicorn", "nginx/1.22.1")]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        app, nginx = (f"http://127.0.0.1:{s.server_port}" for s in servers)
        profile = make_profile({"nginx": {"url": nginx}, "app": {"url": app}}, timeout=5)
        res = {r.id: r for r in engine.check(profile, check_ids=[HEADERS]).results}
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    headers = res[HEADERS]
    assert headers.status is Status.OK, headers.summary
    assert "set-cookie" not in headers.evidence["changed"]
    text = json.dumps(headers.to_dict())
    assert tokens and not any(t in text for t in tokens)


def _serve(handler_class):
    import threading
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _content_listing_against(handler_class, make_profile):
    """nginx.content_listing's result against a server answering with ``handler_class``."""
    server = _serve(handler_class)
    try:
        profile = make_profile({"nginx": {"url": f"http://127.0.0.1:{server.server_port}"}}, timeout=5)
        return {x.id: x for x in engine.check(profile, check_ids=[CONTENT_LISTING]).results}[CONTENT_LISTING]
    finally:
        server.shutdown()
        server.server_close()


def test_content_listing_unknown_when_nginx_cannot_reach_the_bucket(make_profile):
    """A 502 for /content/ says nothing about the bucket's listing: error, not 'no listing'."""
    from http.server import BaseHTTPRequestHandler

    class BadGateway(BaseHTTPRequestHandler):
        def _answer(self, body=b""):
            self.send_response(502)
            self.send_header("Server", "nginx/1.22.1")
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._answer(b"<html><center>nginx</center></html>")

        def do_HEAD(self):
            self._answer()

        def log_message(self, *args):
            pass

    r = _content_listing_against(BadGateway, make_profile)
    assert r.status is Status.ERROR, r.summary
    assert "502" in r.summary and "cannot tell" in r.summary


def test_database_sample_from_the_bucket_when_the_public_api_is_absent(stack, seeded, make_profile):
    """No public channel API (the app answers 404 for it), no nginx.database_path: the channel database
    comes from the bucket's listing the gcs layer's settings reach, never "cannot tell"."""
    _, gcs = seeded
    stack.app.set_fault(public_api_absent=True)
    sections = stack.sections(gcs={"bucket": BUCKET, "endpoint": gcs.url})
    del sections["nginx"]["database_path"]
    res = run(make_profile, sections, layers=["nginx"])[CONTENT_DATABASES]
    assert res.status is Status.OK, res.summary
    assert res.evidence["path"] == f"/content/{DB_OBJECT}"
    assert res.evidence["source"] == "a channel of the bucket listing"
    sections.pop("gcs")                                  # no other source: not configured, said so
    res = run(make_profile, sections, layers=["nginx"])[CONTENT_DATABASES]
    assert res.status is Status.SKIP and "HTTP 404" in res.summary and "gcs.bucket is not set" in res.summary


def test_database_path_lookup_failing_is_an_error_not_a_skip(make_profile):
    """With no nginx.database_path, a 502 from the public channels API means we could not look."""
    from http.server import BaseHTTPRequestHandler

    class Nginx(BaseHTTPRequestHandler):
        def _answer(self, status, body=b""):
            self.send_response(status)
            self.send_header("Server", "nginx/1.22.1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._answer(502 if self.path.startswith("/api/") else 200, b"x")

        def do_HEAD(self):
            self._answer(200)

        def log_message(self, *args):
            pass

    server = _serve(Nginx)
    try:
        profile = make_profile({"nginx": {"url": f"http://127.0.0.1:{server.server_port}"}}, timeout=5)
        r = {x.id: x for x in engine.check(profile, check_ids=[CONTENT_DATABASES]).results}[CONTENT_DATABASES]
    finally:
        server.shutdown()
        server.server_close()
    assert r.status is Status.ERROR, r.summary
    assert "HTTP 502" in r.summary and "nginx.database_path" in r.hint


# --- nginx.static: the asset to probe is found on the live system, never assumed -------------------------
_OTHER_ASSET = "/static/studio/js/app.3f2a9c.js"
_OTHER_PAGE = (b'<!doctype html><html><head><link rel="icon" href="https://cdn.example.org/favicon.ico">'
               b'<script src="/static/studio/js/app.3f2a9c.js?v=2"></script></head><body>Sign in</body></html>')


def _other_app():
    """An app that is not our lab's: / redirects to a page referencing its own bundle."""
    from http.server import BaseHTTPRequestHandler

    class App(BaseHTTPRequestHandler):
        def _answer(self, status, body=b"", headers=()):
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):
            if self.path == "/":
                return self._answer(302, headers=[("Location", "/en/accounts/")])
            if self.path == "/en/accounts/":
                return self._answer(200, _OTHER_PAGE)
            self._answer(200 if self.path == "/stealthz" else 404, b"<3" if self.path == "/stealthz" else b"")

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    return _serve(App)


@pytest.fixture
def other_static(seeded, lab_root, request):
    """Real nginx configured like Studio's whose /static/ holds other files than our lab's, in front of
    an app whose page references one of them."""
    import shutil

    from studio_stack import BUCKET
    from studiodoctor.lab.servers.studio_nginx import StudioNginx

    _, gcs = seeded
    app = _other_app()
    nginx = StudioNginx(lab_root / f"other-{request.node.name[:30]}", app_port=app.server_port, gcs_url=gcs.url,
                        bucket=BUCKET)
    nginx.start()
    shutil.rmtree(nginx.static_dir)
    (nginx.static_dir / "studio" / "js").mkdir(parents=True)
    (nginx.static_dir / "studio" / "js" / "app.3f2a9c.js").write_text("window.studio = {};\n" * 50)
    try:
        yield nginx
    finally:
        nginx.stop()
        app.shutdown()
        app.server_close()


def test_static_asset_discovered_from_the_apps_page(other_static, make_profile):
    """Before: nginx.static and trace.hops FAILed 'collectstatic did not run' on this healthy nginx because
    the lab's kolibri_placeholder.png is not there. Now the asset comes from the app's own page."""
    sections = {"nginx": {"url": other_static.url}}
    res = run(make_profile, sections, layers=["nginx", "trace"])
    static = res[STATIC]
    assert static.status is Status.OK, static.summary
    assert static.evidence["path"] == _OTHER_ASSET
    assert static.evidence["source"] == "referenced by the app's page /en/accounts/"
    assert static.evidence["content_type"] == "application/javascript"
    trace = res[TRACE]
    assert trace.status is Status.OK, trace.summary
    assert _OTHER_ASSET in {row.get("path") for row in trace.evidence["rows"]}
    # the page's asset really missing is proof, not a guess: fail naming where the name came from
    (other_static.static_dir / "studio" / "js" / "app.3f2a9c.js").unlink()
    res = run(make_profile, sections, layers=["nginx", "trace"])
    assert res[STATIC].status is Status.FAIL
    assert "referenced by the app's page /en/accounts/) is missing (404)" in res[STATIC].summary
    assert res[TRACE].evidence["bad_at"] == {_OTHER_ASSET: "nginx"}


def test_static_override_key_wins(other_static, make_profile):
    res = run(make_profile, {"nginx": {"url": other_static.url, "static_sample": "/static/studio/"}},
              layers=["nginx"])
    assert res[STATIC].evidence["source"] == "nginx.static_sample"
    assert res[STATIC].evidence["path"] == "/static/studio/"


def test_static_asset_found_through_autoindex_and_empty_listing_is_proof(stack, make_profile):
    """Our lab's app references no asset: nginx's autoindex of /static/ (Studio has autoindex on) names one.
    An empty listing (collectstatic never ran) is a fail with that evidence."""
    sections = stack.sections()
    del sections["nginx"]["static_path"]
    res = run(make_profile, sections, layers=["nginx"])
    assert res[STATIC].status is Status.OK, res[STATIC].summary
    assert res[STATIC].evidence["source"].startswith("nginx's autoindex of /static/")
    stack.nginx.set_fault("static_missing")
    res = run(make_profile, sections, layers=["nginx"])
    assert res[STATIC].status is Status.FAIL, res[STATIC].summary
    assert "/static/ is served but empty" in res[STATIC].summary


def test_static_cannot_find_an_asset_is_an_error_not_a_fail(lab_root, make_profile):
    """No page reference, no manifest, no autoindex: the check says it could not look, and trace.hops
    leaves the static path out instead of blaming nginx."""
    from studiodoctor.lab.servers.nginx_server import NginxServer

    static = lab_root / "plain-static"
    static.mkdir(exist_ok=True)
    body = ("server { listen 127.0.0.1:%d; location /static/ { alias %s/; } "
            "location / { default_type text/html; return 200 '<html>hello</html>'; } }")
    nginx = NginxServer(lab_root / "plain-nginx")
    nginx.body = body % (nginx.port, static)
    nginx.start()
    try:
        res = run(make_profile, {"nginx": {"url": f"http://127.0.0.1:{nginx.port}"}}, layers=["nginx", "trace"])
    finally:
        nginx.stop()
    assert res[STATIC].status is Status.ERROR, res[STATIC].summary
    assert "could not find a sample asset to probe" in res[STATIC].summary
    assert "nginx.static_sample" in res[STATIC].hint
    assert res[TRACE].status is Status.OK, res[TRACE].summary
    assert any("set nginx.static_sample" in n for n in res[TRACE].evidence["notes"])


def test_content_listing_404_is_an_error_not_no_listing(make_profile):
    """A 404 for /content/ is neither a listing nor a refusal: before, it read 'answers 404 without a listing'."""
    from http.server import BaseHTTPRequestHandler

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(404)
            self.send_header("Server", "nginx/1.22.1")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    r = _content_listing_against(NotFound, make_profile)
    assert r.status is Status.ERROR, r.summary
    assert "neither a listing nor a refusal" in r.summary


def test_storage_object_discovered_through_the_bucket_listing(stack, seeded, make_profile):
    _, gcs = seeded
    sections = stack.sections(gcs={"bucket": BUCKET, "endpoint": gcs.url})
    del sections["nginx"]["storage_path"]
    res = run(make_profile, sections, layers=["nginx"])[CONTENT_STORAGE]
    assert res.status is Status.OK, res.summary
    assert res.evidence["path"].startswith("/content/storage/")
    name = res.evidence["path"][len("/content/"):]
    assert gcs.client().bucket(BUCKET).get_blob(name) is not None     # a real object, listed, not guessed


def test_storage_without_an_object_to_probe_is_an_error_not_a_fail(stack, seeded, make_profile):
    _, gcs = seeded
    sections = stack.sections(gcs={"bucket": BUCKET, "endpoint": gcs.url, "storage_prefix": "nothing-here/"})
    del sections["nginx"]["storage_path"]
    res = run(make_profile, sections, layers=["nginx"])[CONTENT_STORAGE]
    assert res.status is Status.ERROR
    assert "no object under gs://studio-content/nothing-here/" in res.summary
    sections = stack.sections()
    del sections["nginx"]["storage_path"]
    res = run(make_profile, sections, layers=["nginx"])[CONTENT_STORAGE]
    assert res.status is Status.SKIP and "gcs.bucket" in res.summary
