"""TLS handshakes by SNI (ssl.get_server_certificate cannot send SNI to an IP; see local-counterparts)."""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..model import NAME_DOES_NOT_RESOLVE


@dataclass
class CertInfo:
    sni: str
    address: str
    subject: str
    issuer: str
    sans: list[str]
    not_after: datetime
    verify_error: str | None = None      # the chain does not verify (SSLCertVerificationError only)
    verify_unknown: str | None = None    # the verifying handshake failed for another reason: not checked
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
                "days_left": round(self.days_left, 1), "verify_error": self.verify_error,
                **({"verify_not_checked": self.verify_unknown} if self.verify_unknown else {})}


class TLSProbeError(OSError):
    """A handshake that did not complete; ``kind`` says what happened (see ``classify``)."""

    def __init__(self, kind: str, text: str):
        super().__init__(text)
        self.kind = kind
        self.text = text

    @property
    def timed_out(self) -> bool:
        return self.kind == "timeout"

    @property
    def reached(self) -> bool:
        """The server accepted the TCP connection (the failure is in TLS, not in reaching it)."""
        return self.kind in ("reset", "closed", "tls")


KINDS = {
    "timeout": "no answer",
    "refused": "connection refused",
    "unreachable": "network unreachable",
    "dns": NAME_DOES_NOT_RESOLVE,
    "reset": "connection reset by the server during the TLS handshake",
    "closed": "the server closed the connection during the TLS handshake",
    "tls": "TLS handshake failed",
    "verify": "certificate does not verify",
}


def classify(exc: BaseException) -> tuple[str, str]:
    """(kind, one-line text) for an exception from a TCP connect or TLS handshake."""
    text = (str(exc).strip().splitlines() or [""])[0] or type(exc).__name__
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "verify", exc.verify_message or text
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout", KINDS["timeout"]
    if isinstance(exc, ConnectionRefusedError):
        return "refused", KINDS["refused"]
    if isinstance(exc, ConnectionResetError):
        return "reset", KINDS["reset"]
    if isinstance(exc, ssl.SSLEOFError) or isinstance(exc, (ConnectionAbortedError, BrokenPipeError)):
        return "closed", KINDS["closed"]
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None) or text
        return "tls", f"{KINDS['tls']}: {reason}"
    if isinstance(exc, socket.gaierror):
        from ..model import RESOLVER_SILENT
        from .net import lookup_got_no_answer

        if lookup_got_no_answer(exc):
            return "resolver", f"{RESOLVER_SILENT} ({text})"
        return "dns", KINDS["dns"]
    if isinstance(exc, OSError) and exc.errno in (101, 113):  # ENETUNREACH, EHOSTUNREACH
        return "unreachable", text
    return "error", f"{type(exc).__name__}: {text}"


def _matches(name: str, sans: list[str]) -> bool:
    name = name.lower().rstrip(".")
    for san in sans:
        san = san.lower()
        if san == name or (san.startswith("*.") and name.count(".") == san.count(".")
                           and name.split(".", 1)[1] == san[2:]):
            return True
    return False


def contexts(ca_file: str = "") -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(the context that reads any certificate, the verifying one that trusts ``ca_file`` too): the HTTP
    probes' own, built once per process and CA file (each build loads the CA bundle, ~20 ms of CPU) and
    before the checks start (``httpprobe.warm``), so that certificate reads and requests trust the same
    roots and neither pays for a context inside its latency."""
    from .http import context_for

    return context_for(False), context_for(True, ca_file)


def _handshake(host: str, port: int, sni: str, timeout: float, sslctx: ssl.SSLContext, on_network, *,
               want_cert: bool = False, decoded: bool = False, on_connected=None):
    """TCP connect and TLS handshake; ``on_network(seconds)`` gets their time on the wire: from the
    connect's start to the handshake's last segment received, as the kernel saw it (TCP_INFO), so that
    the wait for the GIL after it is not in it. With ``want_cert`` the certificate (DER), and with ``decoded``
    (DER, the ssl module's decoding of it) from a verifying context."""
    from .http import answered_since

    t0 = time.perf_counter()
    sock = None
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
        if on_connected is not None:
            on_connected()
        with sslctx.wrap_socket(sock, server_hostname=sni) as tls:
            if on_network is not None:
                on_network(answered_since(tls, t0))
            if not want_cert:
                return None
            der = tls.getpeercert(binary_form=True)
            return (der, tls.getpeercert()) if decoded else der
    except BaseException:
        if on_network is not None:
            on_network(time.perf_counter() - t0)
        if sock is not None:
            sock.close()
        raise


def inspect_certificate(host: str, port: int, sni: str, *, timeout: float, ca_file: str = "",
                        on_network=None) -> CertInfo:
    """Fetch the certificate served for ``sni`` at host:port and, at the same time (on a network far
    away one handshake's time, not two), try a verified handshake (``timeout`` bounds each of the two
    connections). ``on_network`` (a check's ``ctx.add_network``) gets each connection's time on the wire.

    Raises TLSProbeError (with its ``kind``) when the first handshake does not complete. A failure of the
    second handshake is ``verify_error`` only when it is a verification failure; anything else
    (timeout, reset, refused) is ``verify_unknown``: the chain was not checked."""
    import threading

    raw_ctx, verify_ctx = contexts(ca_file)  # an unreadable CA file raises here: the caller's OSError path
    verified: list = []

    def verify() -> None:
        try:
            verified.append(_handshake(host, port, sni, timeout, verify_ctx, on_network, want_cert=True,
                                       decoded=True))
        except (ssl.SSLError, OSError) as exc:
            verified.append(exc)

    # started once the first connection is accepted: a server answers them in that order
    second = threading.Thread(target=verify, daemon=True, name="tls-verify")
    try:
        der = _handshake(host, port, sni, timeout, raw_ctx, on_network, want_cert=True, on_connected=second.start)
    except (ssl.SSLError, OSError) as exc:
        raise TLSProbeError(*classify(exc)) from exc
    second.join(timeout + 0.5)
    outcome = verified[0] if verified else TimeoutError("no answer (timed out)")  # (DER, decoded) or why not
    # the verified handshake's decoded certificate when it is the same one: no parser to import
    fields = _fields(outcome[1]) if isinstance(outcome, tuple) and outcome[0] == der else None
    subject, issuer, sans, not_after = fields or _parse_der(der)
    info = CertInfo(sni=sni, address=f"{host}:{port}", subject=subject, issuer=issuer, sans=sans,
                    not_after=not_after, names_match=_matches(sni, sans))
    if not isinstance(outcome, tuple):
        kind, text = classify(outcome)
        if kind == "verify":
            info.verify_error = text
        else:  # a timeout or reset on the second handshake says nothing about the certificate
            info.verify_unknown = f"the verifying handshake: {text}"
    return info


# RFC 4514's short names, by the long names the ssl module decodes (cryptography's rfc4514_string uses these)
SHORT_NAMES = {"commonName": "CN", "localityName": "L", "stateOrProvinceName": "ST", "organizationName": "O",
               "organizationalUnitName": "OU", "countryName": "C", "streetAddress": "STREET",
               "domainComponent": "DC", "userId": "UID"}
_ESCAPED = set('\\"+,;<>\0')  # and a leading "#" or space, a trailing space


def _rfc4514(rdns) -> str | None:
    """A name as ``cryptography``'s ``rfc4514_string`` writes it, from the ssl module's decoding; None when
    it needs what only the full parser says right (another attribute type, a multi-valued RDN, escaping)."""
    parts = []
    for rdn in reversed(rdns):
        if len(rdn) != 1 or rdn[0][0] not in SHORT_NAMES:
            return None
        name, value = rdn[0]
        if not value or value[0] in "# " or value[-1] == " " or _ESCAPED & set(value):
            return None
        parts.append(f"{SHORT_NAMES[name]}={value}")
    return ",".join(parts)


def _fields(decoded: dict) -> tuple[str, str, list[str], datetime] | None:
    """(subject, issuer, DNS names, not after) of ``SSLSocket.getpeercert()``'s dict, or None (see _rfc4514)."""
    subject, issuer = _rfc4514(decoded.get("subject", ())), _rfc4514(decoded.get("issuer", ()))
    if subject is None or issuer is None or "notAfter" not in decoded:
        return None
    sans = [value for kind, value in decoded.get("subjectAltName", ()) if kind == "DNS"]
    return subject, issuer, sans, datetime.fromtimestamp(ssl.cert_time_to_seconds(decoded["notAfter"]), timezone.utc)


def _parse_der(der: bytes) -> tuple[str, str, list[str], datetime]:
    """The same fields read with ``cryptography`` (a certificate that did not verify, or an odd name)."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
    except x509.ExtensionNotFound:
        sans = []
    return cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), list(sans), cert.not_valid_after_utc


def handshake_problem(exc: BaseException, what: str, target: str, sni: str):
    """The Result for a first handshake that did not complete, by what happened: no answer or refused is
    `unreachable` (a fail, DESIGN), a reset/close/alert after TCP connected is a TLS `fail`, the rest `error`."""
    from ..model import Reason, error, fail, unreachable

    kind, text = (exc.kind, exc.text) if isinstance(exc, TLSProbeError) else classify(exc)
    evidence = {"address": target, "sni": sni, "error_kind": kind}
    if kind in ("timeout", "refused", "unreachable", "dns", "resolver"):  # unreachable() makes "resolver" an error
        res = unreachable(what, target, text, timed_out=kind == "timeout")
        res.evidence.update(evidence)
        return res
    if kind in ("reset", "closed", "tls"):
        return fail(f"{what} {target} accepted the connection but the TLS handshake for {sni} failed: {text}",
                    evidence=evidence, reason=Reason.FINDING,
                    hint="The server answers TCP but not TLS for this name: no certificate or TLS config for "
                         "the SNI, a protocol/cipher mismatch, or something in front that is not TLS.")
    return error(f"TLS handshake with {what} {target} for {sni}: {text}"[:300], evidence=evidence,
                 reason=Reason.UNEXPECTED)
