"""A fault-injecting HTTP/1.1 proxy in front of the rehearsal AWS endpoint (moto + bridge).

Rehearsal tooling for the network rows of the fault matrix; nothing in ``tasks/`` or
``flows/`` imports it. A deploy is pointed at the proxy (``aws.endpoint_url``) and the test
changes the network under it while it runs:

- pass-through: requests and responses are relayed byte for byte, bodies streamed in
  chunks, client connections kept alive (one upstream connection per client connection);
- ``throttle(n, match=…)``: the next n matching requests are answered with AWS's own
  throttling shape (Lambda: HTTP 429 ``TooManyRequestsException``; JSON-protocol services:
  HTTP 400 ``ThrottlingException``) and never reach the upstream;
- ``down()`` / ``up()``: the listening port is closed (new connections are refused by the
  kernel) and every open connection is reset (RST, not FIN); ``up()`` reopens the same port.
  ``down_when(match, up_after=T)`` starts the outage at the first matching request — that
  request is reset, not forwarded — and optionally ends it T seconds later;
- ``before_forward(match, hook)``: the next matching request waits while ``hook(request)``
  runs (e.g. another client's write straight to the upstream), then is forwarded: a race
  placed exactly between two of the deploy's calls;
- every request is logged with its kind (``lambda:UpdateAlias``, ``logs:FilterLogEvents``…)
  and what the proxy did with it, for assertions.

Requests are classified without reading their bodies: the Lambda REST path, the
``X-Amz-Target`` header of JSON-protocol services, else the service of the SigV4 credential
scope and the HTTP method.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import select
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

Action = Literal["forwarded", "throttled", "reset", "failed"]
Edge = Literal["down", "up"]
Match = str | Iterable[str] | Callable[["Request"], bool]

MAX_HEAD = 64 * 1024
CHUNK = 64 * 1024
UPSTREAM_TIMEOUT_S = 900.0  # the longest Lambda invoke; a hung upstream must not leak a thread
NO_BODY_STATUS = (204, 304)
HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection")

_TARGET_VERSION = re.compile(r"_\d{8}$")
_CREDENTIAL = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/")
# The Lambda REST API: (method, path shape after /<api-version>/functions) → operation.
_LAMBDA_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(pattern), operation)
    for method, pattern, operation in (
        ("GET", r"^/?$", "ListFunctions"),
        ("POST", r"^/?$", "CreateFunction"),
        ("GET", r"^/[^/]+/?$", "GetFunction"),
        ("DELETE", r"^/[^/]+/?$", "DeleteFunction"),
        ("GET", r"^/[^/]+/configuration/?$", "GetFunctionConfiguration"),
        ("PUT", r"^/[^/]+/configuration/?$", "UpdateFunctionConfiguration"),
        ("PUT", r"^/[^/]+/code/?$", "UpdateFunctionCode"),
        ("POST", r"^/[^/]+/invocations/?$", "Invoke"),
        ("POST", r"^/[^/]+/invoke-async/?$", "InvokeAsync"),
        ("GET", r"^/[^/]+/versions/?$", "ListVersionsByFunction"),
        ("POST", r"^/[^/]+/versions/?$", "PublishVersion"),
        ("GET", r"^/[^/]+/aliases/?$", "ListAliases"),
        ("POST", r"^/[^/]+/aliases/?$", "CreateAlias"),
        ("GET", r"^/[^/]+/aliases/[^/]+/?$", "GetAlias"),
        ("PUT", r"^/[^/]+/aliases/[^/]+/?$", "UpdateAlias"),
        ("DELETE", r"^/[^/]+/aliases/[^/]+/?$", "DeleteAlias"),
        ("GET", r"^/[^/]+/concurrency/?$", "GetFunctionConcurrency"),
        ("GET", r"^/[^/]+/policy/?$", "GetPolicy"),
    )
)
_LAMBDA_PATH = re.compile(r"/20\d\d-\d\d-\d\d/functions(/.*)?")

LAMBDA_THROTTLE_BODY = {
    "Type": "User",
    "message": "Rate exceeded",
    "Reason": "CallerRateLimitExceeded",
}


@dataclass(frozen=True)
class Request:
    """One request as the proxy saw it (its head only; bodies are streamed, never parsed)."""

    seq: int
    method: str
    path: str
    query: str
    headers: dict[str, str]
    service: str
    operation: str

    @property
    def kind(self) -> str:
        """``service:Operation``, e.g. ``lambda:UpdateAlias`` or ``logs:FilterLogEvents``."""
        return f"{self.service}:{self.operation}"

    @property
    def json_protocol(self) -> bool:
        """Whether the service speaks the AWS JSON protocol (operation in X-Amz-Target)."""
        return "x-amz-target" in self.headers


@dataclass(frozen=True)
class Seen:
    """What the proxy did with one request (or one outage edge, with request None)."""

    seq: int
    at: float
    kind: str
    action: Action | Edge
    request: Request | None = None


def classify(method: str, target: str, headers: dict[str, str], seq: int = 0) -> Request:
    """The service and operation of a request, from its line and headers alone."""
    parts = urlsplit(target)
    path = parts.path or "/"
    amz_target = headers.get("x-amz-target", "")
    service, operation = "", f"{method} {path}"
    lambda_path = _LAMBDA_PATH.fullmatch(path)
    if amz_target and "." in amz_target:
        prefix, _, operation = amz_target.partition(".")
        service = _TARGET_VERSION.sub("", prefix).lower()
    elif lambda_path:
        service = "lambda"
        rest = lambda_path.group(1) or ""
        operation = next(
            (op for m, shape, op in _LAMBDA_ROUTES if m == method and shape.match(rest)),
            f"{method} {path}",
        )
    else:
        scope = _CREDENTIAL.search(headers.get("authorization", ""))
        service = scope.group(1) if scope else "unknown"
        operation = method
    return Request(
        seq=seq,
        method=method,
        path=path,
        query=parts.query,
        headers=headers,
        service=service,
        operation=operation,
    )


def matcher(match: Match) -> Callable[[Request], bool]:
    """A predicate from a kind pattern (``lambda:*``), several patterns, or a predicate."""
    if callable(match):
        return match
    patterns = (match,) if isinstance(match, str) else tuple(match)
    return lambda request: any(fnmatch.fnmatchcase(request.kind, p) for p in patterns)


def throttle_response(request: Request) -> bytes:
    """The bytes AWS answers a throttled request with, in the request's protocol."""
    request_id = str(uuid.uuid4())
    if request.service == "lambda":
        status, reason = 429, "Too Many Requests"
        headers = {
            "Content-Type": "application/json",
            "x-amzn-ErrorType": "TooManyRequestsException",
        }
        body = json.dumps(LAMBDA_THROTTLE_BODY).encode()
    elif request.json_protocol:
        status, reason = 400, "Bad Request"
        headers = {
            "Content-Type": request.headers.get("content-type", "application/x-amz-json-1.1")
        }
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
    elif request.service == "s3":
        status, reason = 503, "Slow Down"
        headers = {"Content-Type": "application/xml"}
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>"
        )
    else:  # the query protocol (IAM, STS…)
        status, reason = 400, "Bad Request"
        headers = {"Content-Type": "text/xml"}
        body = (
            b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
            b"<Message>Rate exceeded</Message></Error></ErrorResponse>"
        )
    lines = [f"HTTP/1.1 {status} {reason}", f"x-amzn-RequestId: {request_id}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines += [f"Content-Length: {len(body)}", "Connection: keep-alive", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


# ------------------------------------------------------------------------------ wire helpers
class _Closed(Exception):
    """The peer closed (or the proxy reset) a connection in the middle of a message."""


class _Reader:
    """A buffered reader over a socket that never holds a second reference to it.

    ``socket.makefile`` would keep the descriptor open after ``close()`` (io refs), and the
    outage must really close it.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _fill(self) -> bool:
        data = self.sock.recv(CHUNK)
        if not data:
            return False
        self.buffer += data
        return True

    def readline(self) -> bytes:
        """One line including its CRLF; b"" at a clean end of stream."""
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                return line
            if len(self.buffer) > MAX_HEAD:
                raise _Closed("header line too long")
            if not self._fill():
                if self.buffer:
                    raise _Closed("connection closed mid-line")
                return b""

    def read_some(self, limit: int) -> bytes:
        """Up to limit bytes (what is buffered, else one recv); b"" at end of stream."""
        if not self.buffer and not self._fill():
            return b""
        data = bytes(self.buffer[:limit])
        del self.buffer[:limit]
        return data


def _read_head(reader: _Reader) -> tuple[str, list[tuple[str, str]], bytes] | None:
    """(start line, headers, raw bytes) of the next message; None at a clean end of stream."""
    line = reader.readline()
    while line in (b"\r\n", b"\n"):  # tolerate stray CRLFs between keep-alive messages
        line = reader.readline()
    if not line:
        return None
    raw = bytearray(line)
    headers: list[tuple[str, str]] = []
    while True:
        line = reader.readline()
        if not line:
            raise _Closed("connection closed inside a message head")
        raw += line
        if len(raw) > MAX_HEAD:
            raise _Closed("message head too large")
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    return raw.decode("latin-1").split("\r\n", 1)[0].rstrip("\n"), headers, bytes(raw)


def _header(headers: list[tuple[str, str]], name: str) -> str:
    wanted = name.lower()
    return next((v for k, v in headers if k.lower() == wanted), "")


def _head_bytes(start: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [start, *(f"{k}: {v}" for k, v in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _relay_exact(reader: _Reader, length: int, out: socket.socket | None) -> None:
    while length > 0:
        data = reader.read_some(min(length, CHUNK))
        if not data:
            raise _Closed("connection closed inside a body")
        if out is not None:
            out.sendall(data)
        length -= len(data)


def _relay_chunked(reader: _Reader, out: socket.socket | None) -> None:
    """Relay a chunked body as it arrives (streaming), trailers included."""
    while True:
        size_line = reader.readline()
        if not size_line:
            raise _Closed("connection closed inside a chunked body")
        if out is not None:
            out.sendall(size_line)
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while True:  # trailers, up to the empty line
                trailer = reader.readline()
                if not trailer:
                    raise _Closed("connection closed inside chunked trailers")
                if out is not None:
                    out.sendall(trailer)
                if trailer in (b"\r\n", b"\n"):
                    return
        _relay_exact(reader, size + 2, out)  # the data and its CRLF


def _relay_body(reader: _Reader, headers: list[tuple[str, str]], out: socket.socket | None) -> bool:
    """Relay a request or response body framed by its headers; False if none was framed."""
    if "chunked" in _header(headers, "transfer-encoding").lower():
        _relay_chunked(reader, out)
        return True
    length = _header(headers, "content-length")
    if length:
        _relay_exact(reader, int(length), out)
        return True
    return False


def _relay_until_close(reader: _Reader, out: socket.socket) -> None:
    while data := reader.read_some(CHUNK):
        out.sendall(data)


def _wants_close(version: str, headers: list[tuple[str, str]]) -> bool:
    connection = _header(headers, "connection").lower()
    return "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)


def _dropped(sock: socket.socket) -> bool:
    """Whether an idle keep-alive connection was closed by its peer (readable = EOF/junk)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def _reset(sock: socket.socket) -> None:
    """Close sock with an RST (linger 0); wake any thread blocked reading it first."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)  # wakes a blocked recv() without sending a FIN
    except OSError:
        pass  # already closed by its own thread: nothing left to reset
    sock.close()


# ------------------------------------------------------------------------------- the proxy
@dataclass
class _Rule:
    remaining: int
    matches: Callable[[Request], bool]


@dataclass
class _Hook:
    remaining: int
    matches: Callable[[Request], bool]
    run: Callable[[Request], None]


@dataclass
class _Outage:
    matches: Callable[[Request], bool]
    up_after_s: float | None


@dataclass
class FaultProxy:
    """A real TCP proxy speaking HTTP/1.1 to its clients and to upstream, with fault controls.

    Use as a context manager (``with FaultProxy() as proxy: … proxy.url``); controls may be
    called from any thread while requests flow.
    """

    upstream: str = "http://127.0.0.1:4566"
    host: str = "127.0.0.1"
    port: int = 0
    log: list[Seen] = field(default_factory=list)
    accepted: int = 0  # client connections accepted: keep-alive makes it fewer than requests
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _listener: socket.socket | None = field(default=None, repr=False)
    _open: set[socket.socket] = field(default_factory=set, repr=False)
    _rules: list[_Rule] = field(default_factory=list, repr=False)
    _outages: list[_Outage] = field(default_factory=list, repr=False)
    _hooks: list[_Hook] = field(default_factory=list, repr=False)
    hook_errors: list[BaseException] = field(default_factory=list)
    _timers: list[threading.Timer] = field(default_factory=list, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)
    _seq: int = 0
    _started: bool = False
    _closed: bool = False

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The endpoint URL clients use, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{self.host}:{self.port}"

    @property
    def is_up(self) -> bool:
        """Whether the port is open (accepting connections)."""
        return self._listener is not None

    def start(self) -> FaultProxy:
        """Open the port (a free one unless port was given) and serve in background threads."""
        self._closed = False
        self.up()
        return self

    def stop(self) -> None:
        """Close the port and every connection for good; pending automatic up()s are dropped."""
        with self._lock:
            self._closed = True
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        self._take_down(record=False)
        for thread in list(self._threads):
            thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- controls --------------------------------------------------------------------------
    def throttle(self, n: int, match: Match = "*") -> None:
        """Answer the next n requests matching match with AWS's throttling error (not forwarded).

        match: a kind pattern such as ``lambda:UpdateAlias`` or ``logs:*``, several patterns,
        or a predicate on the Request. Rules are consumed in the order they were added.
        """
        with self._lock:
            self._rules.append(_Rule(remaining=n, matches=matcher(match)))

    def down(self) -> None:
        """Start an outage now: close the port and reset every open connection."""
        self._take_down(record=True)

    def up(self) -> None:
        """End an outage: reopen the same port (a no-op when it is open)."""
        with self._lock:
            if self._listener is not None or self._closed:
                return
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(128)
            self.port = int(listener.getsockname()[1])
            self._listener = listener
            if self._started:  # not the first opening: an outage ended
                self._note("-", "up")
            self._started = True
            thread = threading.Thread(
                target=self._accept, args=(listener,), name=f"fault-proxy-{self.port}", daemon=True
            )
            self._threads.append(thread)
        thread.start()

    def down_when(self, match: Match, *, up_after: float | None = None) -> None:
        """Start an outage at the first request matching match (that request is reset).

        With up_after, the port reopens that many seconds after the outage started.
        """
        with self._lock:
            self._outages.append(_Outage(matches=matcher(match), up_after_s=up_after))

    def before_forward(
        self, match: Match, hook: Callable[[Request], None], *, times: int = 1
    ) -> None:
        """Run hook(request) before forwarding each of the next `times` matching requests
        (the request waits for it). A hook's exception is kept in hook_errors, and the
        request is forwarded all the same."""
        with self._lock:
            self._hooks.append(_Hook(remaining=times, matches=matcher(match), run=hook))

    def clear(self) -> None:
        """Drop pending throttles, outage triggers and hooks (the port stays as it is)."""
        with self._lock:
            self._rules.clear()
            self._outages.clear()
            self._hooks.clear()

    def up_in(self, seconds: float) -> None:
        """Reopen the port seconds from now (in the background)."""
        timer = threading.Timer(seconds, self.up)
        timer.daemon = True
        with self._lock:
            self._timers.append(timer)
        timer.start()

    # -- what happened ---------------------------------------------------------------------
    def counts(self, action: str | None = None) -> Counter[str]:
        """Requests per kind, all of them or only those with action (forwarded, throttled…)."""
        with self._lock:
            return Counter(
                s.kind
                for s in self.log
                if s.request is not None and (action is None or s.action == action)
            )

    def seen(self, match: Match = "*", action: str | None = None) -> list[Seen]:
        """The log entries of requests matching match (and action), in arrival order."""
        test = matcher(match)
        with self._lock:
            entries = list(self.log)
        return [
            s
            for s in entries
            if s.request is not None and test(s.request) and (action is None or s.action == action)
        ]

    def outages(self) -> list[Seen]:
        """The down/up edges, in order."""
        with self._lock:
            return [s for s in self.log if s.request is None]

    # -- internals -------------------------------------------------------------------------
    def _next_seq(self) -> int:
        # Called with the lock held: one counter orders requests and outage edges alike.
        self._seq += 1
        return self._seq

    def _note(self, kind: str, action: Action | Edge, request: Request | None = None) -> None:
        # Called with the lock held.
        seq = request.seq if request is not None else self._next_seq()
        self.log.append(Seen(seq, time.monotonic(), kind, action, request))

    def _record(self, request: Request, action: Action) -> None:
        with self._lock:
            self._note(request.kind, action, request)

    def _take_down(self, *, record: bool) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._open = set(self._open), set()
            if listener is not None and record:
                self._note("-", "down")
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of its thread
            except OSError:
                pass
            listener.close()
        for sock in sockets:
            _reset(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # the port was closed (down or stop)
            with self._lock:
                if self._listener is not listener:
                    _reset(conn)
                    return
                self._open.add(conn)
                self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _next_action(self, request: Request) -> tuple[str, float | None]:
        """'reset' (an outage starts), 'throttle' or 'forward' for this request."""
        with self._lock:
            for outage in self._outages:
                if outage.matches(request):
                    self._outages.remove(outage)
                    return "reset", outage.up_after_s
            for rule in self._rules:
                if rule.remaining > 0 and rule.matches(request):
                    rule.remaining -= 1
                    return "throttle", None
        return "forward", None

    def _run_hook(self, request: Request) -> None:
        with self._lock:
            hook = next((h for h in self._hooks if h.remaining > 0 and h.matches(request)), None)
            if hook is not None:
                hook.remaining -= 1
        if hook is None:
            return
        try:
            hook.run(request)
        except Exception as exc:  # the proxy must go on relaying; the test reads the error
            logger.warning("hook before %s failed: %s", request.kind, exc)
            with self._lock:
                self.hook_errors.append(exc)

    def _connect_upstream(self) -> socket.socket:
        target = urlsplit(self.upstream)
        sock = socket.create_connection(
            (target.hostname or "127.0.0.1", target.port or 80), timeout=UPSTREAM_TIMEOUT_S
        )
        with self._lock:
            if self._listener is None:  # went down while connecting
                _reset(sock)
                raise _Closed("the proxy is down")
            self._open.add(sock)
        return sock

    def _serve(self, client: socket.socket) -> None:
        reader = _Reader(client)
        upstream: socket.socket | None = None
        upstream_reader: _Reader | None = None
        try:
            while True:
                head = _read_head(reader)
                if head is None:
                    return
                start, headers, _ = head
                method, target, version = [*start.split(" ", 2), "", ""][:3]
                with self._lock:
                    seq = self._next_seq()
                request = classify(method, target, {k.lower(): v for k, v in headers}, seq=seq)
                if _header(headers, "expect").lower() == "100-continue":
                    # Answer for the upstream, so the body is sent to us without the 1 s wait.
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    headers = [(k, v) for k, v in headers if k.lower() != "expect"]
                action, up_after = self._next_action(request)
                if action == "reset":
                    self._record(request, "reset")
                    logger.info("outage starts at %s", request.kind)
                    self.down()
                    if up_after is not None:
                        self.up_in(up_after)
                    return
                if action == "throttle":
                    _relay_body(reader, headers, None)  # consume it: the connection stays usable
                    self._record(request, "throttled")  # logged before the caller can return
                    client.sendall(throttle_response(request))
                else:
                    self._run_hook(request)
                    if upstream is not None and _dropped(upstream):
                        self._forget(upstream)  # upstream closed it while idle: a fresh one
                        upstream = None
                    if upstream is None:
                        upstream = self._connect_upstream()
                        upstream_reader = _Reader(upstream)
                    assert upstream_reader is not None
                    try:
                        upstream.sendall(_head_bytes(start, headers))
                        _relay_body(reader, headers, upstream)
                    except (_Closed, OSError):
                        self._record(request, "failed")
                        raise
                    upstream_open = self._relay_response(
                        request, upstream_reader, client, _wants_close(version, headers)
                    )
                    if upstream_open is None:  # framed by close: so is our answer
                        return
                    if not upstream_open:
                        self._forget(upstream)
                        upstream, upstream_reader = None, None
                if _wants_close(version, headers):
                    return
        except (_Closed, OSError) as exc:
            logger.debug("connection ended: %s", exc)
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    self._forget(sock)

    def _relay_response(
        self, request: Request, reader: _Reader, client: socket.socket, client_close: bool
    ) -> bool | None:
        """Relay one response; True if upstream stays open, False if not, None if framed by EOF.

        Connection headers are hop-by-hop: upstream's (moto closes after every response) are
        replaced by the proxy's own, so the client's connection to the proxy stays alive
        whenever the response is framed, exactly as it would with AWS.
        """
        try:
            while True:
                head = _read_head(reader)
                if head is None:
                    raise _Closed("upstream closed before answering")
                start, headers, raw = head
                parts = start.split(" ", 2)
                status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
                if 100 <= status < 200:
                    client.sendall(raw)
                    continue  # an interim response: the final one follows
                break
        except (_Closed, OSError):
            self._record(request, "failed")
            raise
        # Logged before the answer leaves: a client reading the log as soon as its call
        # returns must find it there.
        self._record(request, "forwarded")
        no_body = request.method == "HEAD" or status in NO_BODY_STATUS
        framed = no_body or any(
            _header(headers, name) for name in ("content-length", "transfer-encoding")
        )
        upstream_open = framed and not _wants_close(parts[0], headers)
        own = [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP]
        own.append(("Connection", "keep-alive" if framed and not client_close else "close"))
        client.sendall(_head_bytes(start, own))
        if not no_body and not _relay_body(reader, headers, client):
            _relay_until_close(reader, client)
        return upstream_open if framed else None

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        try:
            sock.close()
        except OSError:
            pass
