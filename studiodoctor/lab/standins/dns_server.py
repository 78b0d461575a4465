"""A real DNS server on loopback (dnslib, UDP + TCP) serving a zone from a JSON file it rereads.

Run as its own process so the lab's DNS survives the CLI::

    python -m studiodoctor.lab.standins.dns_server --port 5353 --zone /path/zone.json

The zone file (rewritten by :class:`DnsServer` to apply faults; reread on every change)::

    {"records": [{"name": "studio.localtest", "type": "A", "value": "127.0.0.1", "ttl": 60},
                 {"name": "www.studio.localtest", "type": "CNAME", "value": "studio.localtest"},
                 {"name": "localtest", "type": "NS", "value": "ada.ns.cloudflare.com"}],
     "faults": {"broken.studio.localtest": "servfail", "slow.studio.localtest": "timeout"}}

Unlike dnslib's ZoneResolver this resolver chases CNAME chains inside the zone (a recursive
resolver would), answers NXDOMAIN for unknown names and NOERROR/empty for known names without
the asked type. Faults: ``servfail`` answers SERVFAIL, ``timeout`` drops the query.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any

from ..launcher import Launcher, free_port, write_json_atomic

FAULTS = ("servfail", "timeout")


def _norm(name: str) -> str:
    return name.lower().rstrip(".") + "."


class _ZoneFile:
    """The zone, reloaded when the file's mtime changes."""

    def __init__(self, path: Path):
        self.path = path
        self._mtime = None
        self._lock = threading.Lock()
        self.records: dict[str, list[dict]] = {}
        self.faults: dict[str, str] = {}

    def current(self):
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            return self.records, self.faults
        with self._lock:
            if mtime != self._mtime:
                try:
                    data = json.loads(self.path.read_text())
                except ValueError:
                    return self.records, self.faults  # half-written: keep the previous zone
                records: dict[str, list[dict]] = {}
                for rec in data.get("records", []):
                    records.setdefault(_norm(rec["name"]), []).append(rec)
                self.records = records
                self.faults = {_norm(k): v for k, v in (data.get("faults") or {}).items()}
                self._mtime = mtime
            return self.records, self.faults


def _resolver_class():
    from dnslib import QTYPE, RCODE, RR
    from dnslib.dns import A, AAAA, CNAME, NS, TXT, DNSError
    from dnslib.server import BaseResolver

    rdata = {"A": A, "AAAA": AAAA, "CNAME": lambda v: CNAME(_norm(v)), "NS": lambda v: NS(_norm(v)),
             "TXT": TXT}

    class ChasingResolver(BaseResolver):
        def __init__(self, zone: _ZoneFile):
            self.zone = zone

        def resolve(self, request, handler):
            records, faults = self.zone.current()
            reply = request.reply()
            reply.header.aa = 1
            qname = _norm(str(request.q.qname))
            qtype = QTYPE[request.q.qtype]
            name, seen = qname, set()
            while True:
                fault = faults.get(name)
                if fault == "timeout":
                    raise DNSError(f"lab fault: dropping query for {name}")
                if fault == "servfail":
                    reply.header.rcode = RCODE.SERVFAIL
                    return reply
                recs = records.get(name)
                if recs is None:
                    if name == qname:
                        reply.header.rcode = RCODE.NXDOMAIN
                    return reply  # a dangling CNAME target: the chain so far, like a recursor
                cname = [r for r in recs if r["type"] == "CNAME"]
                if cname and qtype != "CNAME":
                    rec = cname[0]
                    reply.add_answer(RR(name, QTYPE.CNAME, ttl=int(rec.get("ttl", 60)),
                                        rdata=rdata["CNAME"](rec["value"])))
                    seen.add(name)
                    name = _norm(rec["value"])
                    if name in seen or len(seen) > 16:
                        reply.header.rcode = RCODE.SERVFAIL  # a CNAME loop (postmortem 002)
                        return reply
                    continue
                for rec in recs:
                    if rec["type"] == qtype and qtype in rdata:
                        reply.add_answer(RR(name, getattr(QTYPE, qtype), ttl=int(rec.get("ttl", 60)),
                                            rdata=rdata[qtype](rec["value"])))
                return reply

    return ChasingResolver


def serve(port: int, zone_path: Path, address: str = "127.0.0.1") -> None:
    from dnslib.server import DNSLogger, DNSServer

    resolver = _resolver_class()(_ZoneFile(zone_path))
    logger = DNSLogger(log="-request,-reply,-truncated,-send,-recv,-data", prefix=False)
    servers = [DNSServer(resolver, port=port, address=address, logger=logger, tcp=tcp) for tcp in (False, True)]
    for srv in servers:
        srv.start_thread()
    print(f"dns_server listening on {address}:{port} (udp+tcp), zone {zone_path}", flush=True)
    try:
        servers[0].thread.join()  # serve until killed
    except KeyboardInterrupt:
        pass


class DnsServer(Launcher):
    """The lab's DNS: ``python -m studiodoctor.lab.standins.dns_server`` on a free port.

    Faults (each reverts with the matching call): ``remove_record(name)`` / ``set_records(...)``
    (NXDOMAIN), ``set_fault(name, "servfail"|"timeout")`` / ``set_fault(name, None)``,
    ``set_nameservers([...])`` (delegation elsewhere)."""

    kind = "dns"

    def __init__(self, root, port: int = 0, zone: str = "localtest", records: list | None = None,
                 faults: dict | None = None, address: str = "127.0.0.1", **options):
        super().__init__(root, port, zone=zone, address=address, **options)
        self.zone = zone
        self.host = address  # another loopback address serves as this machine's resolver on port 53
        self.zone_file = self.dir / "zone.json"
        self._initial = {"records": records or [], "faults": faults or {}}

    @classmethod
    def from_state(cls, state):
        obj = super().from_state(state)
        obj._initial = None
        return obj

    # zone editing ---------------------------------------------------------
    def read_zone(self) -> dict[str, Any]:
        return json.loads(self.zone_file.read_text())

    def write_zone(self, data: dict[str, Any]) -> None:
        write_json_atomic(self.zone_file, data)

    def set_records(self, records: list[dict]) -> None:
        data = self.read_zone()
        data["records"] = records
        self.write_zone(data)

    def add_record(self, name: str, rtype: str, value: str, ttl: int = 60) -> None:
        data = self.read_zone()
        data["records"].append({"name": name, "type": rtype, "value": value, "ttl": ttl})
        self.write_zone(data)

    def remove_record(self, name: str, rtype: str | None = None) -> list[dict]:
        data = self.read_zone()
        gone = [r for r in data["records"] if _norm(r["name"]) == _norm(name) and rtype in (None, r["type"])]
        data["records"] = [r for r in data["records"] if r not in gone]
        self.write_zone(data)
        return gone

    def set_fault(self, name: str, fault: str | None) -> None:
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown DNS fault {fault!r} (known: {', '.join(FAULTS)})")
        data = self.read_zone()
        faults = data.setdefault("faults", {})
        if fault is None:
            faults.pop(name, None)
        else:
            faults[name] = fault
        self.write_zone(data)

    def set_nameservers(self, nameservers: list[str]) -> None:
        data = self.read_zone()
        data["records"] = [r for r in data["records"] if not (r["type"] == "NS" and _norm(r["name"]) == _norm(self.zone))]
        data["records"] += [{"name": self.zone, "type": "NS", "value": ns} for ns in nameservers]
        self.write_zone(data)

    # lifecycle --------------------------------------------------------------
    def command(self) -> list[str]:
        return [sys.executable, "-m", "studiodoctor.lab.standins.dns_server", "--port", str(self.port),
                "--zone", str(self.zone_file), "--address", self.host]

    def start(self, timeout: float = 15.0) -> "DnsServer":
        if self._initial is not None or not self.zone_file.exists():
            self.write_zone(self._initial or {"records": [], "faults": {}})
        return super().start(timeout)  # waits for the TCP listener

    @property
    def resolver(self) -> str:
        return self.address

    def profile(self) -> dict:
        return {"dns": {"resolvers": [self.resolver], "zone": self.zone}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--zone", required=True, type=Path)
    args = parser.parse_args(argv)
    serve(args.port or free_port(), args.zone, args.address)
    return 0


if __name__ == "__main__":
    sys.exit(main())
