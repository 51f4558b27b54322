"""A loopback HTTP proxy between boto3 and moto that counts S3 requests and
injects faults.

Point a client at `proxy.url` instead of the moto server. Every request is
forwarded unchanged (path-style addressing) and recorded:

    proxy.counts      {"GET": n, "PUT": n, "HEAD": n, "DELETE": n, "LIST": n, "POST": n}
    proxy.bytes_up    request body bytes (client -> server)
    proxy.bytes_down  response body bytes (server -> client)
    proxy.requests    list of Request(method, kind, key, status, fault)

A DeleteObjects call (POST ?delete) counts as one DELETE request; its keys
are in Request.deleted (and `proxy.deleted_keys()`).

Faults, at a seeded rate, optionally only after the first N requests and only
for some kinds/keys:

    proxy.set_faults(rate=1.0, kinds=("500",), after=10, only=("PUT",))

kinds, before the request reaches the server: "503" (SlowDown), "500"
(InternalError), "429" (SlowDown), "reset" (connection reset, no response),
"delay" (answer late by `delay` seconds); after the server executed it:
"lost-reply" (the server stored the PUT / deleted the keys / answered the GET,
then the connection is reset before the client sees the answer: its retry
meets the effect, e.g. If-None-Match -> 412), "truncate" (send half the
response body, then close; offered only for answers with a body: GET, LIST
and POST such as DeleteObjects, not PUT or HEAD, whose answers have none).
With once=True a key is faulted at most once (its retry goes through).
"""
from __future__ import annotations

import html
import http.client
import random
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs, unquote

import pytest

KINDS = ("GET", "PUT", "HEAD", "DELETE", "LIST", "POST")
NO_BODY = ("PUT", "HEAD")   # answers without a body: nothing to truncate

_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
    "<Message>{msg}</Message><RequestId>proxy</RequestId></Error>"
)
_STATUS_FAULTS = {
    "503": (503, "SlowDown", "Please reduce your request rate."),
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "429": (429, "SlowDown", "Too many requests."),
}


@dataclass
class Request:
    method: str
    kind: str
    key: str        # object key without the bucket ("" for bucket-level requests)
    status: int     # 0 when the connection was reset
    fault: str = ""
    deleted: tuple = ()  # keys named in a DeleteObjects body
    if_none_match: bool = False  # the request carried If-None-Match


def classify(method: str, path: str, query: str) -> tuple[str, str]:
    """(kind, key) of a path-style S3 request."""
    parts = unquote(path).lstrip("/").split("/", 1)
    key = parts[1] if len(parts) > 1 else ""
    qs = parse_qs(query, keep_blank_values=True)
    if method == "POST" and "delete" in qs:
        return "DELETE", key
    if method == "GET" and not key:
        return "LIST", key
    return method, key


class S3Proxy:
    def __init__(self, upstream_url: str, host: str = "127.0.0.1"):
        up = urlsplit(upstream_url)
        self.upstream = (up.hostname, up.port or 80)
        self._lock = threading.Lock()
        self._local = threading.local()
        self.reset_counts()
        self.clear_faults()
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    # -- counting -----------------------------------------------------------
    def reset_counts(self) -> None:
        with self._lock:
            self.counts = {k: 0 for k in KINDS}
            self.bytes_up = 0
            self.bytes_down = 0
            self.requests: list[Request] = []
            self._seen = 0
            self.arrivals: list[float] = []   # time.monotonic() of each request's arrival

    def total(self) -> int:
        return sum(self.counts.values())

    def keys(self, kind: str, status: int | None = None) -> list[str]:
        """Keys of the recorded requests of one kind (optionally one status)."""
        return [r.key for r in self.requests
                if r.kind == kind and (status is None or r.status == status)]

    def deleted_keys(self) -> list[str]:
        """Keys deleted by DELETE or DeleteObjects, in request order."""
        out = []
        for r in self.requests:
            if r.kind == "DELETE" and 200 <= r.status < 300:
                out.extend(r.deleted or [r.key])
        return out

    def summary(self) -> str:
        parts = [f"{k}={v}" for k, v in self.counts.items() if v]
        return " ".join(parts) + f" up={self.bytes_up} down={self.bytes_down}"

    # -- faults -------------------------------------------------------------
    def set_faults(self, rate: float = 1.0, kinds=("500",), *, seed: int = 0, after: int = 0,
                   only=None, key_contains: str | None = None, delay: float = 0.5,
                   once: bool = False) -> None:
        """Inject faults into `rate` of the requests from request number `after` on.

        only: request kinds to fault (e.g. ("PUT",)); None = all.
        key_contains: fault only keys containing this substring.
        once: fault each key at most once.
        """
        with self._lock:
            self._faults = dict(rate=rate, kinds=tuple(kinds), after=after, only=only,
                                key_contains=key_contains, delay=delay, once=once, faulted=set())
            self._rng = random.Random(seed)
            self._seen = 0

    # -- request rate (issue 13) -----------------------------------------------
    def set_slowdown_rate(self, rate: int | None) -> None:
        """Answer 503 SlowDown (not forwarded) to requests beyond `rate` arrivals
        in the last second, as providers with a request limit do; None: off."""
        with self._lock:
            self._slowdown_rate = rate

    def _arrive(self) -> str:
        """Record an arrival; "503" when it is over the SlowDown rate."""
        now = time.monotonic()
        with self._lock:
            self.arrivals.append(now)
            rate = getattr(self, "_slowdown_rate", None)
            if rate is None:
                return ""
            recent = sum(1 for t in reversed(self.arrivals[-(rate + 1):]) if t > now - 1.0)
            return "503" if recent > rate else ""

    def max_per_second(self) -> int:
        """The most requests that arrived within any one-second window."""
        times = sorted(self.arrivals)
        best, start = 0, 0
        for end, t in enumerate(times):
            while times[start] <= t - 1.0:
                start += 1
            best = max(best, end - start + 1)
        return best

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = None
            self._rng = random.Random(0)

    def _pick_fault(self, kind: str, key: str) -> str:
        with self._lock:
            n = self._seen
            self._seen += 1
            f = self._faults
            if not f or n < f["after"]:
                return ""
            if f["only"] and kind not in f["only"]:
                return ""
            if f["key_contains"] and f["key_contains"] not in key:
                return ""
            if f["once"] and key in f["faulted"]:
                return ""
            if self._rng.random() >= f["rate"]:
                return ""
            kinds = [k for k in f["kinds"] if not (k == "truncate" and kind in NO_BODY)]
            if not kinds:
                return ""
            f["faulted"].add(key)
            return self._rng.choice(kinds)

    def _record(self, req: Request, up: int, down: int) -> None:
        with self._lock:
            self.counts[req.kind] = self.counts.get(req.kind, 0) + 1
            self.bytes_up += up
            self.bytes_down += down
            self.requests.append(req)

    # -- upstream -----------------------------------------------------------
    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(*self.upstream, timeout=60)
            self._local.conn = conn
        return conn

    def forward(self, method, path, headers, body):
        for attempt in (0, 1):  # one reconnect if a kept-alive upstream socket went stale
            conn = self._conn()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, resp.reason, resp.getheaders(), data
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: S3Proxy

    def log_message(self, *args):  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if len(body) != n:
            # The client died mid-upload: drop the request as S3 does, rather than
            # forward a truncated object no real server would store.
            self.close_connection = True
            raise ConnectionResetError(f"client sent {len(body)} of {n} body bytes")
        return body

    def _handle(self):
        proxy = self.owner
        method = self.command
        path, _, query = self.path.partition("?")
        kind, key = classify(method, path, query)
        body = self._body()
        fault = proxy._arrive() or proxy._pick_fault(kind, key)
        deleted = ()
        if kind == "DELETE" and method == "POST":
            deleted = tuple(html.unescape(k) for k in re.findall(r"<Key>(.*?)</Key>", body.decode()))

        if fault == "reset":
            proxy._record(Request(method, kind, key, 0, fault), len(body), 0)
            self._reset()
            return
        if fault in _STATUS_FAULTS:
            status, code, msg = _STATUS_FAULTS[fault]
            data = _ERROR_XML.format(code=code, msg=msg).encode()
            proxy._record(Request(method, kind, key, status, fault), len(body), len(data))
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(data)
            return
        if fault == "delay":
            time.sleep(proxy._faults["delay"] if proxy._faults else 0.5)

        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("expect", "transfer-encoding", "connection", "content-length")}
        if body or method in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        try:
            status, reason, resp_headers, data = proxy.forward(method, self.path, headers, body)
        except OSError:
            proxy._record(Request(method, kind, key, 502, "upstream"), len(body), 0)
            self.send_error(502)
            return
        inm = "If-None-Match" in self.headers
        proxy._record(Request(method, kind, key, status, fault, deleted, inm), len(body), len(data))
        if fault == "lost-reply":  # the server did it; the client never hears so
            self._reset()
            return
        self.send_response(status, reason)
        for k, v in resp_headers:
            if k.lower() in ("transfer-encoding", "connection", "content-length", "date", "server"):
                continue
            self.send_header(k, v)
        if method == "HEAD":
            cl = dict((k.lower(), v) for k, v in resp_headers).get("content-length", "0")
            self.send_header("Content-Length", cl)
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if fault == "truncate" and len(data) > 1:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)

    def _reset(self):
        # RST instead of FIN: the client sees "connection reset by peer"
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _handle


@pytest.fixture
def s3proxy(s3_server):
    """A counting/fault-injecting proxy in front of the session's moto server."""
    proxy = S3Proxy(s3_server.url)
    yield proxy
    proxy.stop()
