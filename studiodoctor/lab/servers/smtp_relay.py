"""The lab's SMTP relay (standing in for smtp.postmarkapp.com:587): a real SMTP server (aiosmtpd) that
offers STARTTLS with a certificate from its own lab CA and refuses every message (the `email` layer
never sends mail; anything that tries is answered 550).

    python -m studiodoctor.lab.servers.smtp_relay --port 2587 --cert relay.crt --key relay.key
"""

from __future__ import annotations

import argparse
import sys
import threading

from ..launcher import Launcher, free_port, stop_pid


class _RefuseAll:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        return "550 5.7.1 the studiodoctor lab relay accepts no mail"

    async def handle_DATA(self, server, session, envelope):
        return "550 5.7.1 the studiodoctor lab relay accepts no mail"


def serve(port: int, cert: str, key: str, address: str = "127.0.0.1") -> None:
    import ssl

    from aiosmtpd.controller import Controller

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    controller = Controller(_RefuseAll(), hostname=address, port=port, tls_context=tls, require_starttls=True,
                            server_hostname="smtp.localtest", ident="studiodoctor lab relay")
    controller.start()
    print(f"smtp relay listening on {address}:{port} (STARTTLS)", flush=True)
    threading.Event().wait()


class SMTPRelay(Launcher):
    """``stop()`` is the fault smtp-relay-unreachable; ``profile()`` writes email.smtp_host/port/ca_file."""

    kind = "smtp-relay"

    def __init__(self, root, port: int = 0, **options):
        super().__init__(root, port, **options)
        self.ca_file = self.dir / "tls" / "ca.pem"
        self.cert, self.key = self.dir / "tls" / "relay.crt", self.dir / "tls" / "relay.key"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "studiodoctor.lab.servers.smtp_relay", "--port", str(self.port),
                "--cert", str(self.cert), "--key", str(self.key)]

    def start(self, timeout: float = 15.0) -> "SMTPRelay":
        if not self.cert.exists():
            from ..certs import LabCA

            ca = LabCA(self.dir)
            ca.issue("smtp.localtest", "127.0.0.1", label="relay")
        return super().start(timeout)

    def stop(self) -> None:
        stop_pid(self.pid)

    def profile(self) -> dict:
        return {"email": {"smtp_host": "127.0.0.1", "smtp_port": self.port, "ca_file": str(self.ca_file)}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args(argv)
    serve(args.port or free_port(), args.cert, args.key, args.address)
    return 0


if __name__ == "__main__":
    sys.exit(main())
