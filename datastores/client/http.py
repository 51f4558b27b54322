"""HTTPS to the server: certificate pinning, authentication, a small keep-alive pool."""
from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import queue
import socket
import ssl
import threading
import time

from .errors import ClientError, RequestError
from .repo import Repository

TIMEOUT = 120
_RETRYABLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
              http.client.CannotSendRequest, http.client.BadStatusLine)


def format_fingerprint(der: bytes) -> str:
    return ":".join(f"{b:02x}" for b in hashlib.sha256(der).digest())


def _norm(fp: str) -> str:
    return fp.replace(":", "").strip().lower()


class Server:
    """Connections to one server, all checked against one certificate fingerprint."""

    def __init__(self, repo: Repository, secret: str, fingerprint: str | None = None, pool_size: int = 8):
        self.repo = repo
        self.fingerprint = fingerprint
        if repo.is_token:
            self.auth = f"PBSAPIToken={repo.auth_id}:{secret}"
        else:
            self.auth = "Basic " + base64.b64encode(f"{repo.auth_id}:{secret}".encode()).decode()
        self._pool: queue.LifoQueue = queue.LifoQueue()
        self._pool_size = pool_size
        self._checked = False
        self._lock = threading.Lock()
        self._contexts: dict[bool, ssl.SSLContext] = {}

    # -- connections ---------------------------------------------------------------
    def _context(self, verify: bool) -> ssl.SSLContext:
        """One context per kind for all connections. Unverified (a pinned fingerprint, checked in
        _connect after the handshake), it loads no CA store: parsing the system's CAs costs more
        than the rest of a short command's start."""
        ctx = self._contexts.get(verify)
        if ctx is None:
            if verify:
                ctx = ssl.create_default_context()
            else:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._contexts[verify] = ctx
        return ctx

    def _connect(self) -> http.client.HTTPSConnection:
        pinned = self.fingerprint is not None
        conn = http.client.HTTPSConnection(self.repo.host, self.repo.port, timeout=TIMEOUT,
                                           context=self._context(verify=not pinned))
        try:
            conn.connect()
        except ssl.SSLCertVerificationError:
            seen = self._peer_fingerprint()
            raise ClientError(f"the server's certificate is not trusted by this host; its SHA-256 "
                              f"fingerprint is {seen}. If that is the server's (Datastore → Summary → "
                              f"Show Connection Information), pass --fingerprint or set PBS_FINGERPRINT") from None
        except OSError as e:
            raise ClientError(f"cannot connect to {self.repo.host}:{self.repo.port}: "
                              f"{e.strerror or e}") from None
        if pinned:
            seen = format_fingerprint(conn.sock.getpeercert(binary_form=True))
            if _norm(seen) != _norm(self.fingerprint):
                conn.close()
                raise ClientError(f"certificate fingerprint mismatch: expected {self.fingerprint}, "
                                  f"the server presented {seen}; refusing to connect")
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _peer_fingerprint(self) -> str:
        raw = socket.create_connection((self.repo.host, self.repo.port), timeout=TIMEOUT)
        with self._context(verify=False).wrap_socket(raw) as s:
            return format_fingerprint(s.getpeercert(binary_form=True))

    @contextlib.contextmanager
    def connection(self):
        try:
            conn, reused = self._pool.get_nowait(), True
        except queue.Empty:
            conn, reused = self._connect(), False
        ok = False
        try:
            yield conn, reused
            ok = True
        finally:
            if ok and self._pool.qsize() < self._pool_size:
                self._pool.put(conn)
            else:
                conn.close()

    def close(self) -> None:
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                return

    # -- requests ----------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None, json_body=None,
                retry: bool = True) -> bytes:
        """Send a request; the response body, or RequestError with the server's message."""
        headers = {"Authorization": self.auth}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        elif body is not None:
            headers["Content-Type"] = "application/octet-stream"
        if body is not None:
            headers["Content-Length"] = str(len(body))
        for attempt in (1, 2):
            with self.connection() as (conn, reused):
                try:
                    conn.request(method, path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                except _RETRYABLE:
                    # A kept-alive connection the server closed meanwhile: once more on a new one.
                    conn.close()
                    if reused and retry and attempt == 1:
                        continue
                    raise ClientError(f"connection to {self.repo.host}:{self.repo.port} lost") from None
                except (OSError, http.client.HTTPException) as e:
                    conn.close()
                    raise ClientError(f"connection to {self.repo.host}:{self.repo.port} failed: {e}") from None
            if resp.status >= 400:
                try:
                    message = json.loads(data)["errors"]
                except (ValueError, KeyError, TypeError):
                    message = data.decode(errors="replace")[:200] or resp.reason
                raise RequestError(resp.status, f"{message} (HTTP {resp.status})")
            return data
        raise AssertionError("unreachable")

    def get_json(self, path: str):
        return json.loads(self.request("GET", path))

    def post_json(self, path: str, doc: dict, retry: bool = True):
        return json.loads(self.request("POST", path, json_body=doc, retry=retry))


class RateLimit:
    """At most `rate` bytes per second on average over all threads (None: unlimited)."""

    def __init__(self, rate: float | None):
        self.rate = rate
        self.sent = 0
        self.start = time.monotonic()
        self.lock = threading.Lock()

    def wait(self, n: int) -> None:
        if not self.rate:
            return
        with self.lock:
            self.sent += n
            due = self.start + self.sent / self.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
