"""The API server's ``pods/portforward`` subresource over WebSocket, as kube-apiserver and the kubelet serve
it to ``kubectl port-forward`` and to the client libraries (``kubernetes.stream.portforward``):

``GET|POST /api/v1/namespaces/NS/pods/NAME/portforward?ports=P[,Q]`` with ``Upgrade: websocket`` and the
subprotocol ``v4.channel.k8s.io`` (or the base ``channel.k8s.io``). Each binary frame starts with a channel
byte: port ``i`` of ``ports`` has the data channel ``2*i`` and the error channel ``2*i+1``. The server first
writes, on each of the two channels, the port as 2 bytes little-endian; then data frames on the even
channel are the TCP stream both ways, and a failure to reach the port is a text written on the odd one
(the kubelet's ``error forwarding port P to pod ...``), after which the socket is closed.

Refusals are the API server's own ``Status``: 403 without ``create`` on ``pods/portforward`` (the grant
``kubectl port-forward`` needs; the WebSocket upgrade is a GET, which current API servers authorize as
``create`` too), 404 for an unknown pod, 400 when the request is no upgrade ("Upgrade request required"),
names no port, or the pod is not running. Where a pod's port leads is :mod:`.network`'s map.
"""

from __future__ import annotations

import base64
import hashlib
import re
import select
import socket
import struct

from .network import lab_address

PORTFORWARD_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/portforward$")
PROTOCOLS = ("v4.channel.k8s.io", "channel.k8s.io")
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DIAL_TIMEOUT_S = 5.0
IDLE_TIMEOUT_S = 300.0   # a forwarded stream nobody uses is closed, as the kubelet's streamIdleTimeout (4 h) would
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def _failure(code: int, reason: str, message: str) -> tuple[int, dict]:
    return code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                  "reason": reason, "code": code}


def check_request(state: dict, ns: str, name: str, headers, query: dict) -> tuple[int, dict] | tuple[dict, list]:
    """(pod, ports) to forward, or the API server's (code, Status) refusal (authorization is the caller's)."""
    from .proxy import _find, not_found

    pod = _find(state, ns, "pods", name)
    if pod is None:
        return not_found("pods", name)
    if "websocket" not in (headers.get("Upgrade") or "").lower():
        return _failure(400, "BadRequest", "Upgrade request required")
    raw = ",".join(query.get("ports", []))
    try:
        ports = [int(p) for p in raw.split(",") if p.strip()]
    except ValueError:
        return _failure(400, "BadRequest", f'invalid port "{raw}"')
    if not ports or any(not 0 < p < 65536 for p in ports):
        return _failure(400, "BadRequest", 'query parameter "port" is required' if not ports else
                        f'invalid port "{raw}"')
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or not status.get("podIP"):
        return _failure(400, "BadRequest", f"unable to upgrade connection: pod {name} is not running "
                                           f"(phase {status.get('phase') or 'unknown'})")
    return pod, ports


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()


def chosen_protocol(headers) -> str | None:
    offered = [p.strip() for p in (headers.get("Sec-WebSocket-Protocol") or "").split(",") if p.strip()]
    return next((p for p in offered if p in PROTOCOLS), None)


# -- frames (RFC 6455): the server's are unmasked, the client's masked -----------------------------------

def frame(opcode: int, payload: bytes) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 2**16:
        head += bytes([126]) + struct.pack(">H", n)
    else:
        head += bytes([127]) + struct.pack(">Q", n)
    return head + payload


def _read_exact(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return bytes(out)


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """(opcode, payload) of one whole message (continuations joined)."""
    opcode, data = None, bytearray()
    while True:
        b0, b1 = _read_exact(sock, 2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", _read_exact(sock, 2))[0]
        elif n == 127:
            n = struct.unpack(">Q", _read_exact(sock, 8))[0]
        mask = _read_exact(sock, 4) if b1 & 0x80 else b""
        payload = _read_exact(sock, n)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        op = b0 & 0x0F
        if op >= 0x8:           # control frames may come between fragments
            return op, payload
        opcode = op if opcode is None else opcode
        data += payload
        if b0 & 0x80:
            return opcode, bytes(data)


def _dial(state: dict, pod: dict, port: int) -> tuple[socket.socket | None, str]:
    ip = pod["status"]["podIP"]
    address = lab_address(state, ip, port)
    failed = (f"error forwarding port {port} to pod {pod['metadata'].get('uid', '')}, uid : failed to execute "
              f"portforward in network namespace: failed to connect to localhost:{port} inside namespace: "
              f"dial tcp4 127.0.0.1:{port}: connect: connection refused")
    if address is None:
        return None, failed
    host, _, lab_port = address.rpartition(":")
    try:
        return socket.create_connection((host, int(lab_port)), timeout=DIAL_TIMEOUT_S), ""
    except OSError:
        return None, failed


def relay(client: socket.socket, state: dict, pod: dict, ports: list[int]) -> None:
    """After the 101: the channels of ``ports``, each port's stream to the lab process its pod port leads to.
    With ``state["round_trip_ms"]`` (an API server across a network) each way of the stream is half of it
    later: a request and its answer cost one round trip, as through a real API server."""
    import time

    half = float(state.get("round_trip_ms") or 0) / 2000

    def send(channel: int, payload: bytes) -> None:
        client.sendall(frame(OP_BINARY, bytes([channel]) + payload))

    def later() -> None:
        if half:
            time.sleep(half)

    upstreams: dict[socket.socket, int] = {}
    for i, port in enumerate(ports):
        head = struct.pack("<H", port)
        send(2 * i, head)
        send(2 * i + 1, head)
    for i, port in enumerate(ports):
        upstream, failed = _dial(state, pod, port)
        if upstream is None:
            send(2 * i + 1, failed.encode())
        else:
            upstreams[upstream] = i
    try:
        if not upstreams:
            return
        while upstreams:
            ready, _, _ = select.select([client, *upstreams], [], [], IDLE_TIMEOUT_S)
            if not ready:
                return
            for sock in ready:
                if sock is client:
                    op, payload = read_frame(client)
                    if op == OP_CLOSE:
                        return
                    if op == OP_PING:
                        client.sendall(frame(OP_PONG, payload))
                    elif op in (OP_BINARY, OP_TEXT) and payload:
                        channel, data = payload[0], payload[1:]
                        target = next((u for u, i in upstreams.items() if 2 * i == channel), None)
                        if target is not None and data:
                            later()
                            target.sendall(data)
                    continue
                data = sock.recv(65536)
                if not data:   # the pod's side closed this port: the stream ends with it
                    upstreams.pop(sock).close()
                    continue
                later()
                send(2 * upstreams[sock], data)
    except (OSError, ConnectionError):
        pass
    finally:
        for sock in upstreams:
            sock.close()
        try:
            client.sendall(frame(OP_CLOSE, struct.pack(">H", 1000)))
        except OSError:
            pass
