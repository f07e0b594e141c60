"""A real HTTP receiver on loopback, for tests of anything that sends webhooks.

It listens on 127.0.0.1 on a free port, in a background thread, records every request it gets (method, path,
headers, body) and answers each one as told: a fixed ``Reply``, a queue of replies used in order, or a function
of the request. A reply can wait before answering, or hang until the receiver stops.

    with Receiver() as receiver:                                  # answers 204 until told otherwise
        receiver.reply(Reply(500), Reply(500), Reply(200, body="ok"))
        ...send webhooks to receiver.url...
        receiver.wait_for_requests(3)
        assert receiver.requests[0].headers["webhook-id"]

Replies queued with ``reply`` are used first, one per request; when the queue is empty the ``default`` answers
(a ``Reply`` or a function ``Request -> Reply``). Given a server-side ``ssl.SSLContext`` as ``tls``, it speaks HTTPS.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: How long a hanging reply holds the connection at most, should nobody stop the receiver.
MAX_HANG_SECONDS = 60.0


@dataclass(frozen=True)
class Request:
    """One request as the receiver saw it. ``headers`` has lower-case names."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float

    def json(self):
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass(frozen=True)
class Reply:
    """How to answer one request.

    ``delay``: seconds to wait before answering. ``hang``: never answer (the connection stays open, silent, until
    the receiver stops). ``stall_after``: send the status, the headers (with the full Content-Length) and this many
    bytes of the body, then hang like ``hang``. ``body``: str (UTF-8) or bytes. ``headers``: e.g.
    ``{"Retry-After": "120"}`` or ``{"Location": other.url}``.
    """

    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | str = b""
    delay: float = 0.0
    hang: bool = False
    stall_after: int | None = None

    def payload(self) -> bytes:
        return self.body.encode() if isinstance(self.body, str) else self.body


Behaviour = Reply | Callable[[Request], Reply]


class Receiver:
    """An HTTP server on 127.0.0.1 (port chosen by the system). Start and stop it, or use it as a context manager."""

    def __init__(
        self,
        default: Behaviour | None = None,
        *,
        host: str = "127.0.0.1",
        path: str = "/hook",
        tls: ssl.SSLContext | None = None,
    ):
        self.default: Behaviour = default if default is not None else Reply()
        self._tls = tls
        self.path = path
        self._host = host
        self._queue: deque[Behaviour] = deque()
        self._requests: list[Request] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> Receiver:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = ThreadingHTTPServer((self._host, 0), self._handler_class())
        self._server.daemon_threads = True
        if self._tls is not None:
            self._server.socket = self._tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"receiver:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; hanging replies are released (their connections close without an answer)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- where it listens --------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the receiver is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port><path>`` (``https`` with ``tls``)."""
        return f"{'https' if self._tls else 'http'}://{self._host}:{self.port}{self.path}"

    # -- behaviour ---------------------------------------------------------------------------------------------
    def reply(self, *replies: Behaviour) -> Receiver:
        """Queue replies for the next requests, in order (after those already queued)."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def always(self, behaviour: Behaviour) -> Receiver:
        """Answer every request like this from now on (drops queued replies)."""
        with self._lock:
            self._queue.clear()
            self.default = behaviour
        return self

    def _next_behaviour(self) -> Behaviour:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    # -- what it got -------------------------------------------------------------------------------------------
    @property
    def requests(self) -> list[Request]:
        """A copy of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def wait_for_requests(self, count: int = 1, *, timeout: float = 10.0) -> list[Request]:
        """Block until at least ``count`` requests arrived; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self._requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{len(self._requests)} request(s) within {timeout}s, expected {count}")
                self._arrived.wait(remaining)
            return list(self._requests)

    # -- the server side ---------------------------------------------------------------------------------------
    def _record(self, request: Request) -> None:
        with self._arrived:
            self._requests.append(request)
            self._arrived.notify_all()

    def _handler_class(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(
                    method=self.command,
                    path=self.path,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=body,
                    received_at=time.monotonic(),
                )
                receiver._record(request)
                behaviour = receiver._next_behaviour()
                answer = behaviour(request) if callable(behaviour) else behaviour
                if answer.hang:
                    receiver._stopping.wait(MAX_HANG_SECONDS)
                    self.close_connection = True
                    return
                if answer.delay and receiver._stopping.wait(answer.delay):
                    self.close_connection = True
                    return
                payload = answer.payload()
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    if not any(name.lower() == "content-type" for name in answer.headers):
                        self.send_header("Content-Type", "text/plain; charset=utf-8")
                    self.send_header("Content-Length", str(len(payload)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    if answer.stall_after is not None:
                        self.wfile.write(payload[: answer.stall_after])
                        self.wfile.flush()
                        receiver._stopping.wait(MAX_HANG_SECONDS)
                    elif payload and self.command != "HEAD":
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (a timeout, a bounded read): nothing to tell it
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

            def log_message(self, format, *args):  # keep test output quiet
                pass

        return Handler
