"""TLS handshakes by SNI (ssl.get_server_certificate cannot send SNI to an IP; see local-counterparts)."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timezone


@dataclass
class CertInfo:
    sni: str
    address: str
    subject: str
    issuer: str
    sans: list[str]
    not_after: datetime
    verify_error: str | None = None
    names_match: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def days_left(self) -> float:
        return (self.not_after - datetime.now(timezone.utc)).total_seconds() / 86400

    @property
    def is_traefik_default(self) -> bool:
        return "TRAEFIK DEFAULT CERT" in self.subject.upper()

    def evidence(self) -> dict:
        return {"sni": self.sni, "address": self.address, "subject": self.subject, "issuer": self.issuer,
                "san": self.sans, "not_after": self.not_after.isoformat(),
                "days_left": round(self.days_left, 1), "verify_error": self.verify_error}


def _matches(name: str, sans: list[str]) -> bool:
    name = name.lower().rstrip(".")
    for san in sans:
        san = san.lower()
        if san == name or (san.startswith("*.") and name.count(".") == san.count(".")
                           and name.split(".", 1)[1] == san[2:]):
            return True
    return False


def inspect_certificate(host: str, port: int, sni: str, *, timeout: float, ca_file: str = "") -> CertInfo:
    """Fetch the certificate served for ``sni`` at host:port, then try a verified handshake."""
    from cryptography import x509

    raw_ctx = ssl.create_default_context()
    raw_ctx.check_hostname = False
    raw_ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as sock:
        with raw_ctx.wrap_socket(sock, server_hostname=sni) as tls:
            der = tls.getpeercert(binary_form=True)
    cert = x509.load_der_x509_certificate(der)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
    except x509.ExtensionNotFound:
        sans = []
    info = CertInfo(sni=sni, address=f"{host}:{port}", subject=cert.subject.rfc4514_string(),
                    issuer=cert.issuer.rfc4514_string(), sans=list(sans),
                    not_after=cert.not_valid_after_utc, names_match=_matches(sni, list(sans)))
    verify_ctx = ssl.create_default_context()
    if ca_file:
        verify_ctx.load_verify_locations(ca_file)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with verify_ctx.wrap_socket(sock, server_hostname=sni):
                pass
    except ssl.SSLCertVerificationError as exc:
        info.verify_error = exc.verify_message or str(exc)
    except (ssl.SSLError, OSError) as exc:
        info.verify_error = str(exc)
    return info
