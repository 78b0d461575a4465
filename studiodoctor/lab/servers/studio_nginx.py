"""Studio's internal nginx (the ``nginx-proxy`` sidecar on :8080), reproduced from ``docker/nginx/``
(facts file §2) in front of the lab's gunicorn stand-in and fake-gcs-server.

Differences from production, each forced by the lab: it listens on a free loopback port; ``/static/``
aliases a lab directory holding a few sample assets; the bucket is reached path-style on
fake-gcs-server (``http://127.0.0.1:PORT/<bucket>/<name>``) instead of
``https://<bucket>.storage.googleapis.com``; and the bare ``/content/`` answers GCS's own
anonymous-listing refusal (403 AccessDenied XML) because fake-gcs-server has no IAM and would list
(pass ``listing_guard=False`` when ``gcs_url`` is the lab's GCS gate, which refuses listings itself).

Faults (``set_fault(name, on)`` re-renders the config and reloads nginx; they survive to_state):
- ``databases_public``: ``/content/`` hides GCS's Cache-Control and adds ``public, max-age=3600``;
- ``databases_cached``: nginx caches ``/content/`` itself and says so in ``X-Cache-Status`` (PR #1707's bug);
- ``post_allowed``: no ``limit_except GET HEAD OPTIONS`` on the content locations;
- ``storage_uncached``: no ``_cache.conf`` on ``/content/storage/`` (GCS's headers pass through);
- ``bucket_listing``: the bare ``/content/`` is proxied to the bucket root (fake-gcs lists it);
- ``static_missing``: ``/static/`` points at an empty directory (collectstatic never ran);
- ``proxy_read_timeout``: ``set_timeout(60)`` reproduces nginx's default that caused 504/524s (#4336).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from .nginx_server import NginxServer

FAULTS = ("databases_public", "databases_cached", "post_allowed", "storage_uncached", "bucket_listing",
          "static_missing")

# The default lab's sample asset (its profile names it; other variants' profiles leave it to discovery).
STATIC_SAMPLE = "/static/img/kolibri_placeholder.png"

_ACCESS_DENIED = ("<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>Access denied."
                  "</Message><Details>Anonymous caller does not have storage.objects.list access to the Google "
                  "Cloud Storage bucket.</Details></Error>")


class StudioNginx(NginxServer):
    """``StudioNginx(root, app_port=..., gcs_url=..., bucket=..., proxy_read_timeout=100)``."""

    def __init__(self, root, port: int = 0, app_port: int = 0, gcs_url: str = "", bucket: str = "studio-content",
                 proxy_read_timeout: float = 100, faults: list | tuple = (), listing_guard: bool = True,
                 name: str = "studio-nginx", body: str = "", variant: str = "default", **options):
        super().__init__(root, port, name=name, app_port=app_port, gcs_url=gcs_url, bucket=bucket,
                         proxy_read_timeout=proxy_read_timeout, faults=list(faults), listing_guard=listing_guard,
                         variant=variant, **options)
        from ..variants import get

        self.variant = get(variant)
        self.listing_guard = listing_guard
        self.app_port = app_port
        self.gcs_url = gcs_url.rstrip("/")
        self.bucket = bucket
        self.proxy_read_timeout = proxy_read_timeout
        self.faults: set[str] = set(faults)
        if "files_dir" not in self.options:
            # nginx's workers run as nobody: static files and the cache must live where they can reach them
            # (pytest's /tmp/pytest-of-root is 0700 and other sessions reset it at any time)
            external = os.geteuid() == 0 and not _traversable_by_others(self.dir)
            digest = hashlib.sha1(str(self.dir.resolve()).encode()).hexdigest()[:12]
            self.options["files_dir"] = str(Path(tempfile.gettempdir()) / f"studiodoctor-nginx-{digest}"
                                            if external else self.dir)
        self.files_dir = Path(self.options["files_dir"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def static_dir(self) -> Path:
        return self.files_dir / "static"

    # config -------------------------------------------------------------------
    def write_static(self) -> None:
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.files_dir.chmod(0o755)
        for rel, data in self.variant.static_files.items():
            path = self.static_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        (self.files_dir / "static-empty").mkdir(parents=True, exist_ok=True)

    def _content_proxy(self, cached: bool = False) -> str:
        """includes/content/_proxy.conf, with the bucket path-style on fake-gcs-server."""
        limit = "" if "post_allowed" in self.faults else "limit_except GET HEAD OPTIONS { deny all; }\n"
        caching = ("proxy_buffering on;\nproxy_cache content_cache;\nproxy_cache_valid 200 10m;\n"
                   "proxy_ignore_headers Cache-Control Expires Set-Cookie;\n"
                   "add_header X-Cache-Status $upstream_cache_status;\n" if cached else
                   "proxy_buffering off;\nproxy_cache off;\n")
        return (f"{limit}"
                "proxy_http_version 1.1;\n"
                "proxy_set_header Host $proxy_host;\n"
                "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
                "proxy_redirect off;\n"
                f"{caching}"
                "proxy_read_timeout 100s;\n"
                "proxy_ssl_server_name on;\n"
                "gzip off;\n"
                f"rewrite ^/content/(.*)$ /{self.bucket}/$1 break;\n"
                f"proxy_pass {self.gcs_url};\n")

    def _content_locations(self) -> str:
        """studio-content.conf: /content/storage/ with _cache.conf, other /content/ with Google's headers."""
        cache = ("" if "storage_uncached" in self.faults else
                 "proxy_hide_header Cache-Control;\nproxy_hide_header Expires;\n"
                 'add_header Cache-Control "public, max-age=31536000, immutable, no-transform";\n')
        public = ('proxy_hide_header Cache-Control;\nadd_header Cache-Control "public, max-age=3600";\n'
                  if "databases_public" in self.faults else "")
        root_guard = ("" if "bucket_listing" in self.faults or not self.listing_guard else
                      "  # stands in for GCS refusing anonymous listing (fake-gcs-server has no IAM)\n"
                      f"  location = /content/ {{ default_type application/xml; return 403 \"{_ACCESS_DENIED}\"; }}\n")
        content = self._content_proxy(cached="databases_cached" in self.faults) + public
        return (f"  location ^~ /content/storage/ {{\n{_indent(self._content_proxy() + cache)}  }}\n"
                f"  location /content/ {{\n{_indent(content)}  }}\n"
                f"{root_guard}")

    def http_body(self) -> str:
        static_dir = self.files_dir / "static-empty" if "static_missing" in self.faults else self.static_dir
        cache_path = ("" if "databases_cached" not in self.faults else
                      f"proxy_cache_path {self.files_dir}/content_cache levels=1:2 keys_zone=content_cache:1m "
                      "max_size=50m inactive=600m use_temp_path=off;\n")
        return f"""
{cache_path}gzip on;
gzip_proxied any;
gzip_min_length 500;
gzip_types text/css application/javascript text/xml application/xml;
client_max_body_size 1000M;
upstream studio {{ server 127.0.0.1:{self.app_port}; keepalive 5; }}
server {{
  listen 127.0.0.1:{self.port} default_server;
  server_name "";
  location /static/ {{ alias {static_dir}/; expires 4h; autoindex on; }}
  location = /favico.ico {{ alias {self.static_dir}/{self.variant.favicon}; }}
  location / {{
    proxy_pass http://studio;
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_read_timeout {_seconds(self.proxy_read_timeout)};
    proxy_redirect off;
    proxy_cache off;
  }}
{self._content_locations()}}}
"""

    def write_config(self) -> None:
        self.write_static()
        super().write_config()

    # faults ---------------------------------------------------------------------
    def _sync_options(self) -> None:
        self.options["faults"] = sorted(self.faults)
        self.options["proxy_read_timeout"] = self.proxy_read_timeout

    def set_fault(self, name: str, on: bool = True) -> None:
        if name not in FAULTS:
            raise ValueError(f"unknown nginx fault {name!r} (known: {', '.join(FAULTS)})")
        (self.faults.add if on else self.faults.discard)(name)
        self._sync_options()
        if self.alive():
            self.reload()

    def set_timeout(self, seconds: float) -> None:
        """``proxy_read_timeout`` of ``location /`` (100 s in production; 60 s is nginx's default)."""
        self.proxy_read_timeout = seconds
        self._sync_options()
        if self.alive():
            self.reload()

    def clear_faults(self, timeout: float = 100) -> None:
        self.faults.clear()
        self.proxy_read_timeout = timeout
        self._sync_options()
        if self.alive():
            self.reload()

    def stop(self) -> None:
        super().stop()
        if self.files_dir != self.dir and not self.alive():
            shutil.rmtree(self.files_dir, ignore_errors=True)

    def profile(self) -> dict:
        nginx = {"url": self.url, "proxy_read_timeout": float(self.proxy_read_timeout)}
        if self.variant.profile_overrides:
            nginx["static_path"] = STATIC_SAMPLE
        return {"nginx": nginx}


def _traversable_by_others(path: Path) -> bool:
    for parent in [path, *path.parents]:
        try:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
        except FileNotFoundError:
            continue
    return True


def _indent(text: str, prefix: str = "    ") -> str:
    return "".join(prefix + line + "\n" for line in text.splitlines() if line.strip())


def _seconds(value: float) -> str:
    return f"{int(value)}s" if float(value).is_integer() else f"{int(float(value) * 1000)}ms"
