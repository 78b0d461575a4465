"""Cost of the `gcs.databases_cache_control` audit on a big bucket: seeds N objects (default 20,000)
under `databases/` in the real fake-gcs-server, runs the check in-process through the engine and prints
its wall time and the number of HTTP requests it made (target: <= 25 requests, <= 3 s).

Seeding one object at a time through the SDK is slow (the emulator's memory backend inserts in
quadratic time: ~300 s for 20,000), so the objects are preloaded instead:

- ``memory``: the emulator's ``-data`` folder preload (``<dir>/<bucket>/<name>``). Still quadratic inside
  the emulator (~40 s for 20,000) and it sets no Cache-Control, so every object is an offender: the
  audit's worst case (all 20,000 evaluated, 10 named).
- ``filesystem``: the objects are written straight into the emulator's on-disk format (a file per object,
  metadata JSON in an xattr) with Studio's real metadata (``private, max-age=5, no-transform``, gzip),
  one planted offender; ~1 s to seed. The emulator's filesystem backend re-reads every object's
  metadata from disk for each page it serves, so its listing is slower than the memory backend's.
- ``canned``: no emulator; a tiny in-process server answers the JSON API from memory (pages of 1,000
  with GCS's response shape, same metadata and planted offender), to show the audit's own cost when
  the server is fast, as GCS is.

Run: .venv/bin/python benchmarks/gcs_audit.py [--objects 20000] [--backend memory|filesystem|canned|all]
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checks.gcs import BUCKET, DATABASES_CACHE_CONTROL  # noqa: E402
from studiodoctor import engine  # noqa: E402
from studiodoctor.config import profile_from_data  # noqa: E402
from studiodoctor.lab.servers.fake_gcs import (DB_CACHE_CONTROL, FakeGCSServer, write_data_dir,  # noqa: E402
                                       write_filesystem_backend)

BUCKET_NAME = "studio-content"
OFFENDER_VALUE = "public, max-age=3600"


def database_names(n: int, seed: int = 7) -> list[str]:
    """Studio's layout: per channel databases/<id>.sqlite3 and databases/<id>-<version>.sqlite3."""
    rng = random.Random(seed)
    names: list[str] = []
    while len(names) < n:
        channel = "%032x" % rng.getrandbits(128)
        names.append(f"databases/{channel}.sqlite3")
        names.extend(f"databases/{channel}-{v}.sqlite3" for v in range(1, rng.randint(2, 6)))
    return names[:n]


class RequestCounter:
    """Counts every HTTP request leaving this process (requests for the SDK, httpx for anonymous probes)."""

    def __init__(self):
        self.requests: list[str] = []

    def __enter__(self):
        import httpx
        import requests

        self._patches = []
        for cls in (requests.Session, httpx.Client):
            original = cls.send

            def send(this, request, *args, _original=original, **kwargs):
                self.requests.append(f"{request.method} {request.url}")
                return _original(this, request, *args, **kwargs)

            cls.send = send
            self._patches.append((cls, original))
        return self

    def __exit__(self, *exc):
        for cls, original in self._patches:
            cls.send = original


class CannedAPI:
    """GET /storage/v1/b/<bucket> and the paginated /o listing, from memory, on a loopback port."""

    def __init__(self, items: list[dict]):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        bucket = {"kind": "storage#bucket", "name": BUCKET_NAME, "id": BUCKET_NAME, "location": "US",
                  "storageClass": "STANDARD", "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": True}}}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                parts = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path.endswith("/o"):
                    selected = [i for i in items if i["name"].startswith(q.get("prefix", ""))]
                    start, size = int(q.get("pageToken", 0)), int(q.get("maxResults", 1000))
                    body = {"kind": "storage#objects", "items": selected[start:start + size]}
                    if start + size < len(selected):
                        body["nextPageToken"] = str(start + size)
                else:
                    body = bucket
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def profile(self):
        return {"gcs": {"bucket": BUCKET_NAME, "endpoint": self.url, "public_url": self.url}}


def bench(backend: str, n: int, root: Path) -> dict:
    names = database_names(n)
    offender = names[len(names) // 2]
    t0 = time.perf_counter()
    if backend == "memory":
        data = write_data_dir(root / "data", BUCKET_NAME, names)
        server = FakeGCSServer(root / "memory", data_dir=str(data))
    elif backend == "canned":
        server = CannedAPI([{"kind": "storage#object", "name": name, "bucket": BUCKET_NAME, "size": "36",
                             "cacheControl": OFFENDER_VALUE if name == offender else DB_CACHE_CONTROL,
                             "contentEncoding": "gzip", "updated": "2026-11-01T12:00:00.000Z"}
                            for name in names])
    else:
        server = FakeGCSServer(root / "filesystem", backend="filesystem")
        meta = {"CacheControl": DB_CACHE_CONTROL, "ContentEncoding": "gzip", "ContentType": "application/x-sqlite3"}
        write_filesystem_backend(server.filesystem_root, BUCKET_NAME,
                                 [(name, {**meta, "CacheControl": OFFENDER_VALUE} if name == offender else meta)
                                  for name in names])
    server.start()
    try:
        seed_s = time.perf_counter() - t0
        profile = profile_from_data("bench", {"gcs": server.profile()["gcs"], "timeout": 120}, env={})
        with RequestCounter() as counter:
            t1 = time.perf_counter()
            report = engine.check(profile, check_ids=[DATABASES_CACHE_CONTROL], options={"max_objects": 100_000})
            wall = time.perf_counter() - t1
        res = {r.id: r for r in report.results}
        audit = res[DATABASES_CACHE_CONTROL]
        return {"backend": backend, "objects": n, "seed_s": seed_s, "wall_s": wall,
                "audit_ms": audit.duration_ms, "bucket_ms": res[BUCKET].duration_ms,
                "requests": len(counter.requests),
                "list_requests": sum("/o?" in r for r in counter.requests),
                "audited": audit.evidence.get("audited"), "status": audit.status.value,
                "summary": audit.summary}
    finally:
        server.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--backend", choices=("memory", "filesystem", "canned", "all"), default="all")
    args = parser.parse_args(argv)
    backends = ("canned", "filesystem", "memory") if args.backend == "all" else (args.backend,)
    root = Path(tempfile.mkdtemp(prefix="gcs-audit-"))
    try:
        for backend in backends:
            r = bench(backend, args.objects, root)
            print(f"[{r['backend']}] {r['objects']} objects under databases/ seeded in {r['seed_s']:.1f} s")
            print(f"  audit (gcs.bucket + gcs.databases_cache_control): wall {r['wall_s']:.2f} s, "
                  f"{r['requests']} HTTP requests ({r['list_requests']} listing pages), "
                  f"audited {r['audited']}; check itself {r['audit_ms'] / 1000:.2f} s")
            print(f"  verdict: {r['status']}: {r['summary'][:160]}")
            ok = r["requests"] <= 25 and r["wall_s"] <= 3
            print(f"  target <= 25 requests and <= 3 s: {'met' if ok else 'NOT met'}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
