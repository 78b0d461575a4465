"""A lab certificate authority (trustme) writing PEM files that nginx, Traefik and the checks use."""

from __future__ import annotations

import datetime as dt
from pathlib import Path


class LabCA:
    """One CA under ``root/tls``: ``issue("studio.localtest")`` -> (cert+chain path, key path)."""

    def __init__(self, root: Path | str):
        import trustme

        self.dir = Path(root) / "tls"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ca = trustme.CA(organization_name="studiodoctor lab CA")
        self.ca_file = self.dir / "ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))

    def issue(self, *names: str, label: str = "", days: int = 90, expired: bool = False,
              common_name: str | None = None) -> tuple[Path, Path]:
        now = dt.datetime.now(dt.timezone.utc)
        if expired:
            not_before, not_after = now - dt.timedelta(days=90), now - dt.timedelta(days=1)
        else:
            not_before, not_after = now - dt.timedelta(hours=1), now + dt.timedelta(days=days)
        cert = self._ca.issue_cert(*names, common_name=common_name or names[0], not_before=not_before,
                                   not_after=not_after)
        label = label or names[0].replace("*", "wildcard")
        cert_path, key_path = self.dir / f"{label}.crt", self.dir / f"{label}.key"
        cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(key_path))
        return cert_path, key_path
