"""``lab up --rtt MS [--jitter MS]``: a real network between the doctor and the lab.

One small process (asyncio) listens on a loopback port for each endpoint of the lab profile and relays
to the real server with a delay: one round trip before a connection's first byte is relayed (the
handshake a real connection pays), and half a round trip each way on every read (TCP), or on every
datagram (UDP, for the DNS server). Order is kept: a chunk never overtakes the one before it, so jitter
(0..``--jitter`` ms more per read) varies the latency, never the bytes. The lab's own machinery (faults,
drills, readiness) talks to the servers directly; only the profile, what the doctor and the benchmarks'
manual walk read, points at the delayed ports (:func:`route`).

    python -m studiodoctor.lab.latency --config routes.json   (started by the lab, see ``Latency``)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import socket
import time
from pathlib import Path
from typing import Any

from .launcher import Launcher, LabError, free_port, listening_sockets, pid_alive, wait_until

# host:port of a lab server inside a profile's strings (URLs, DSNs, http.resolve targets, resolvers)
LOOPBACK = re.compile(r"(?<![\w.])(127\.0\.0\.1|localhost):(\d{2,5})\b")
CHUNK = 65536


def endpoints(profile: Any) -> list[int]:
    """The loopback ports a profile points at, in order of first appearance (its keys and values)."""
    ports: list[int] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for _, port in _host_port_pairs(node):
                if port not in ports:
                    ports.append(port)
            for key, value in node.items():
                walk(key)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, str):
            for match in LOOPBACK.finditer(node):
                port = int(match.group(2))
                if port not in ports:
                    ports.append(port)

    walk(profile)
    return ports


def route(profile: Any, ports: dict[int, int]) -> Any:
    """``profile`` with every loopback ``host:port`` in ``ports`` (upstream -> delayed) pointing at its
    delayed port. Keys too: ``http.resolve`` maps ``name:443`` to an address, both sides are rewritten
    only where they name a loopback port."""
    def swap(text: str) -> str:
        return LOOPBACK.sub(lambda m: f"{m.group(1)}:{ports.get(int(m.group(2)), int(m.group(2)))}", text)

    if isinstance(profile, dict):
        routed = {swap(k) if isinstance(k, str) else k: route(v, ports) for k, v in profile.items()}
        for key, port in _host_port_pairs(profile):
            routed[key] = ports.get(port, port)
        return routed
    if isinstance(profile, list):
        return [route(v, ports) for v in profile]
    if isinstance(profile, str):
        return swap(profile)
    return profile


def _host_port_pairs(section: dict) -> list[tuple[str, int]]:
    """(port key, port) of ``X_host`` = loopback beside an integer ``X_port`` (``email.smtp_host``)."""
    pairs = []
    for key, value in section.items():
        if isinstance(key, str) and key.endswith("_host") and value in ("127.0.0.1", "localhost"):
            port_key = key[:-len("_host")] + "_port"
            if isinstance(section.get(port_key), int):
                pairs.append((port_key, section[port_key]))
    return pairs


class Latency(Launcher):
    """The delaying relay: ``routes`` maps each delayed port to its upstream port (both on loopback)."""

    kind = "latency"

    def __init__(self, root, port: int = 0, *, rtt_ms: float = 0.0, jitter_ms: float = 0.0,
                 upstreams: list[int] | None = None, routes: dict | None = None, **options):
        routes = {int(k): int(v) for k, v in (routes or {}).items()}
        if not routes:
            routes = {free_port(): up for up in (upstreams or [])}
        super().__init__(root, port=port or (next(iter(routes)) if routes else 0), rtt_ms=rtt_ms,
                         jitter_ms=jitter_ms, routes={str(k): v for k, v in routes.items()}, **options)
        self.routes = routes

    @property
    def delayed(self) -> dict[int, int]:
        """upstream port -> delayed port (what :func:`route` takes)."""
        return {up: here for here, up in self.routes.items()}

    @property
    def config_file(self) -> Path:
        return self.dir / "routes.json"

    def command(self) -> list[str]:
        import sys

        return [sys.executable, "-m", "studiodoctor.lab.latency", "--config", str(self.config_file),
                "--ready", str(self.ready_file)]

    @property
    def ready_file(self) -> Path:
        return self.dir / "ready"

    def start(self, timeout: float = 20.0) -> "Latency":
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps({"rtt_ms": self.options["rtt_ms"],
                                                "jitter_ms": self.options["jitter_ms"],
                                                "routes": self.options["routes"]}))
        self.ready_file.unlink(missing_ok=True)
        self.pid = self.spawn(self.command())

        def ready() -> bool:
            if not pid_alive(self.pid):
                raise LabError(f"the latency relay exited: {self.log}")
            return self.ready_file.exists()

        wait_until(ready, timeout, "the latency relay did not start")
        return self


# the relay itself ---------------------------------------------------------------------------------

class Delay:
    """Due times of one direction of one connection: half a round trip (plus jitter) after each read,
    never before the previous chunk's."""

    def __init__(self, half: float, jitter: float):
        self.half, self.jitter, self.last = half, jitter, 0.0

    def due(self) -> float:
        extra = random.uniform(0, self.jitter) if self.jitter else 0.0
        self.last = max(self.last, time.monotonic() + self.half + extra)
        return self.last


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: Delay) -> None:
    queue: asyncio.Queue = asyncio.Queue()

    async def read() -> None:
        try:
            while chunk := await reader.read(CHUNK):
                queue.put_nowait((delay.due(), chunk))
        except OSError:
            pass
        queue.put_nowait((delay.due(), b""))

    async def write() -> None:
        while True:
            due, chunk = await queue.get()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            try:
                if not chunk:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(chunk)
                await writer.drain()
            except OSError:
                return

    await asyncio.gather(read(), write())


async def _relay_tcp(upstream: int, rtt: float, jitter: float, client_r, client_w) -> None:
    await asyncio.sleep(rtt + (random.uniform(0, jitter) if jitter else 0.0))  # the connection's round trip
    try:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", upstream)
    except OSError:
        client_w.close()  # a refused upstream reads as a reset, as a dead server would
        return
    for w in (client_w, server_w):
        w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        await asyncio.gather(_pipe(client_r, server_w, Delay(rtt / 2, jitter)),
                             _pipe(server_r, client_w, Delay(rtt / 2, jitter)))
    finally:
        for w in (client_w, server_w):
            w.close()


class _UDPRelay(asyncio.DatagramProtocol):
    """Datagrams to ``upstream`` half a round trip late, each answer half a round trip late too."""

    def __init__(self, upstream: int, rtt: float, jitter: float):
        self.upstream, self.rtt, self.jitter = upstream, rtt, jitter
        self.transport = None
        self.peers: dict = {}

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        loop = asyncio.get_running_loop()
        loop.create_task(self._forward(data, addr))

    async def _forward(self, data: bytes, addr) -> None:
        loop = asyncio.get_running_loop()
        peer = self.peers.get(addr)
        if peer is None:
            relay = self

            class Back(asyncio.DatagramProtocol):
                def datagram_received(self, answer: bytes, _src) -> None:
                    loop.call_later(relay._half(), relay.transport.sendto, answer, addr)

            peer, _ = await loop.create_datagram_endpoint(Back, remote_addr=("127.0.0.1", self.upstream))
            self.peers[addr] = peer
        loop.call_later(self._half(), peer.sendto, data)

    def _half(self) -> float:
        return self.rtt / 2 + (random.uniform(0, self.jitter) if self.jitter else 0.0)


MIRROR_POLL = 0.1  # seconds between two looks at which upstreams listen


def listening_ports() -> set[int]:
    """TCP ports something listens on here (asked of the kernel, no connection made: a look every
    ``MIRROR_POLL`` costs a fraction of a millisecond however many connections the machine holds)."""
    return {port for port, _inode in listening_sockets()}


async def serve(config: dict, ready: Path | None = None) -> None:
    """Relay every route; a delayed port listens only while its upstream does, so a stopped server is
    refused here as it would be there (a lab fault stays the same fault with the added latency)."""
    rtt, jitter = float(config["rtt_ms"]) / 1000, float(config.get("jitter_ms") or 0) / 1000
    loop = asyncio.get_running_loop()
    routes = {int(here): int(upstream) for here, upstream in config["routes"].items()}
    listeners: dict[int, asyncio.AbstractServer] = {}
    for here, upstream in routes.items():
        try:  # the same port over UDP (the DNS server); a port nobody answers on UDP just drops
            await loop.create_datagram_endpoint(lambda up=upstream: _UDPRelay(up, rtt, jitter),
                                                local_addr=("127.0.0.1", here))
        except OSError:
            pass
    while True:
        up = listening_ports()
        for here, upstream in routes.items():
            server = listeners.get(here)
            if upstream in up and server is None:
                try:
                    listeners[here] = await asyncio.start_server(
                        lambda r, w, port=upstream: _relay_tcp(port, rtt, jitter, r, w), "127.0.0.1", here)
                except OSError:
                    pass  # the port is busy a moment longer: the next look retries
            elif upstream not in up and server is not None:
                server.close()  # relayed connections go on; new ones are refused, as by the server
                del listeners[here]
        if ready is not None and not ready.exists():
            ready.write_text("ready\n")
        await asyncio.sleep(MIRROR_POLL)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="JSON: rtt_ms, jitter_ms, routes {delayed port: upstream port}")
    ap.add_argument("--ready", type=Path, help="written once every route whose server listens is relayed")
    args = ap.parse_args(argv)
    asyncio.run(serve(json.loads(Path(args.config).read_text()), args.ready))


if __name__ == "__main__":
    main()
