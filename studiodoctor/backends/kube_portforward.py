"""A port-forward through the Kubernetes API, as ``kubectl port-forward`` opens one by hand: a loopback
listener (``127.0.0.1``, a free port) whose every connection is carried to one pod's port over the API
server's ``pods/portforward`` subresource, with the run's kubeconfig credentials.

The protocol is the one the client libraries speak (``kubernetes.stream.portforward``): a WebSocket
upgrade of ``GET /api/v1/namespaces/NS/pods/NAME/portforward?ports=P`` with the subprotocol
``v4.channel.k8s.io``; every binary frame starts with a channel byte, 0 the data and 1 the errors of the
port; the server first writes the port (2 bytes, little-endian) on each channel. One WebSocket carries one
TCP connection (the client library's way: no multiplexing), so a client's pool of connections is as many
streams. The first stream is opened by ``open()`` itself: a refused grant or a missing pod is known before
anything is asked of the backend (``PortForwardRefused``: the API server's own ``Status``).

Transport only: what goes through is the checks' own read-only traffic. Every wait is bounded (the
handshake by ``timeout``, an idle stream by ``idle``); ``close()`` ends the listener and every stream.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import threading
from urllib.parse import quote, urlencode

CHANNEL_PROTOCOL = "v4.channel.k8s.io"
DATA, ERROR = 0, 1
MAX_STREAMS = 16          # connections carried at once (the per-backend caps are far below)


class PortForwardRefused(Exception):
    """The API server refused the port-forward (a ``Status`` of its own): ``kind`` forbidden (403: ``rule``
    names the grant), unauthorized, notfound, bad-request (a pod not running), or error."""

    KINDS = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "notfound"}

    def __init__(self, namespace: str, pod: str, code: int, message: str):
        super().__init__(message or f"HTTP {code}")
        self.namespace, self.pod, self.code, self.message = namespace, pod, code, message
        self.kind = self.KINDS.get(code, "error")

    @property
    def rule(self) -> str:
        return rule(self.namespace)


class StreamBroken(Exception):
    """The stream opened but the pod's port did not answer (the error channel's text)."""


def rule(namespace: str) -> str:
    """The RBAC rule that allows a port-forward in ``namespace`` (what ``kubectl port-forward`` needs)."""
    return (f'Role in namespace {namespace}: {{apiGroups: [""], resources: ["pods/portforward"], '
            f'verbs: ["create"]}}')


def _status_message(body: bytes | None, code: int) -> str:
    try:
        data = json.loads(body or b"")
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("kind") == "Status":
        return str(data.get("message") or data.get("reason") or f"HTTP {code}")
    return f"HTTP {code}"


def open_stream(endpoint, namespace: str, pod: str, port: int, timeout: float):
    """One WebSocket to ``pod``'s ``port``, its two initial frames read: the websocket-client connection."""
    import websocket

    base = endpoint.host.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    url = (f"{base}/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}/portforward?"
           + urlencode({"ports": str(port)}))
    headers = [f"{k}: {v}" for k, v in endpoint.headers.items() if k.lower() == "authorization"]
    sslopt = {"context": endpoint.ssl_context()} if base.startswith("wss:") else {}
    if endpoint.server_name:
        sslopt["server_hostname"] = endpoint.server_name
    try:
        ws = websocket.create_connection(url, timeout=max(0.1, timeout), header=headers,
                                         subprotocols=[CHANNEL_PROTOCOL], sslopt=sslopt,
                                         enable_multithread=True, skip_utf8_validation=True)
    except websocket.WebSocketBadStatusException as exc:
        raise PortForwardRefused(namespace, pod, exc.status_code,
                                 _status_message(exc.resp_body, exc.status_code)) from None
    try:
        for _ in range(2):          # the port on the data channel, then on the error channel
            opcode, data = ws.recv_data(control_frame=False)
            if len(data) != 3 or data[0] not in (DATA, ERROR) or struct.unpack("<H", data[1:])[0] != port:
                raise StreamBroken(f"unexpected first frame {data[:8]!r} (not the port {port} of "
                                   f"{CHANNEL_PROTOCOL})")
    except Exception:
        ws.close()
        raise
    return ws


class Tunnel:
    """``127.0.0.1:local_port`` carried to ``namespace/pod:port`` (see the module's docstring)."""

    def __init__(self, endpoint, namespace: str, pod: str, port: int, *, timeout: float = 10.0,
                 idle: float = 60.0):
        self.endpoint, self.namespace, self.pod, self.port = endpoint, namespace, pod, int(port)
        self.timeout, self.idle = timeout, idle
        self.local_port = 0
        self.streams = 0
        self.errors: list[str] = []
        self._spare = None
        self._listener: socket.socket | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_STREAMS)
        self._threads: list[threading.Thread] = []
        self._live: set[socket.socket] = set()

    @property
    def label(self) -> str:
        return f"pod {self.namespace}/{self.pod}:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.local_port}"

    def open(self) -> "Tunnel":
        """Check the way (one stream opened now: PortForwardRefused, StreamBroken, OSError), then listen."""
        self._spare = open_stream(self.endpoint, self.namespace, self.pod, self.port, self.timeout)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(MAX_STREAMS)
        listener.settimeout(0.5)
        self._listener, self.local_port = listener, listener.getsockname()[1]
        self._spawn(self._accept, f"port-forward {self.label}")
        return self

    def _spawn(self, target, name: str, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self._live.add(conn)
            self._spawn(self._carry, f"port-forward stream {self.label}", conn)

    def _stream(self):
        with self._lock:
            ws, self._spare = self._spare, None
            self.streams += 1
        return ws or open_stream(self.endpoint, self.namespace, self.pod, self.port, self.timeout)

    def _carry(self, conn: socket.socket) -> None:
        if not self._slots.acquire(timeout=self.timeout):
            conn.close()
            return
        ws = None
        try:
            ws = self._stream()
            self._pump(conn, ws)
        except Exception as exc:  # noqa: BLE001 - the client sees its connection closed; the reason is kept
            self.errors.append((str(exc).strip().splitlines() or [type(exc).__name__])[0][:400])
        finally:
            with self._lock:
                self._live.discard(conn)
            conn.close()
            if ws is not None:
                ws.close(timeout=0.2)
            self._slots.release()

    def _pump(self, conn: socket.socket, ws) -> None:
        """Both ways until either side closes: the pod's side first in each turn, so that what the API server
        said on the error channel is read before our next write meets its closed socket."""
        import time

        import websocket

        conn.settimeout(self.timeout)
        raw = ws.sock
        last = time.monotonic()
        while not self._closed.is_set():
            pending = getattr(raw, "pending", lambda: 0)()
            ready = [raw] if pending else select.select([conn, raw], [], [], min(self.idle, 1.0))[0]
            if not ready:
                if time.monotonic() - last > self.idle:
                    return   # an idle stream ends, as the kubelet's streamIdleTimeout ends one
                continue
            last = time.monotonic()
            if raw in ready and not self._from_pod(ws, conn):
                return
            if conn in ready:
                data = conn.recv(65536)
                if not data:
                    return
                try:
                    ws.send_bytes(bytes([DATA]) + data)
                except (OSError, websocket.WebSocketException):
                    raw.settimeout(min(1.0, self.timeout))   # closed under us: it may have said why first
                    while self._from_pod(ws, conn):
                        pass
                    raise

    @staticmethod
    def _from_pod(ws, conn: socket.socket) -> bool:
        """One frame from the API server relayed to ``conn``; False once the stream is over (StreamBroken when
        the error channel speaks)."""
        import websocket

        try:
            opcode, frame = ws.recv_data(control_frame=True)
        except (OSError, websocket.WebSocketException):
            return False
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return False
        if opcode == websocket.ABNF.OPCODE_BINARY and frame:
            if frame[0] == ERROR:
                raise StreamBroken(frame[1:].decode(errors="replace"))
            conn.sendall(frame[1:])
        return True

    def close(self, wait: float = 2.0) -> None:
        """End the listener and every stream; return once their threads are gone (``wait`` at most)."""
        import time

        self._closed.set()
        with self._lock:
            spare, self._spare = self._spare, None
            live, threads = list(self._live), list(self._threads)
        for sock in [s for s in (self._listener,) if s is not None] + live:
            try:
                sock.shutdown(socket.SHUT_RDWR)   # wakes a blocked accept() or recv()
            except OSError:
                pass
        if self._listener is not None:
            self._listener.close()
        if spare is not None:
            spare.close(timeout=0.2)
        until = time.monotonic() + wait
        for thread in threads:
            thread.join(max(0.0, until - time.monotonic()))
