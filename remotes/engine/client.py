"""The one place that builds a boto3 S3 client, and the request counters.

Every component that talks to a remote gets its client from make_s3_client,
so signing, addressing, timeouts, retries, checksums, TLS trust and request
counting behave the same everywhere.
"""
from __future__ import annotations

import base64
import hashlib
import threading

from .config import RemoteConfig
from .limits import CapGuard, Throttle, shared_rate_limiter

KINDS = ("PUT", "LIST", "HEAD", "GET", "DELETE")
_LIST_OPERATIONS = {
    "ListObjectsV2", "ListObjects", "ListObjectVersions", "ListBuckets",
    "ListMultipartUploads", "ListParts",
}
# Error codes with which providers ask the client to slow down.
THROTTLE_CODES = {
    "SlowDown", "Throttling", "ThrottlingException", "TooManyRequests",
    "TooManyRequestsException", "RequestLimitExceeded", "RequestThrottled",
    "ServiceUnavailable",
}


def make_s3_client(cfg: RemoteConfig, counters: "RequestCounters | None" = None, *,
                   max_attempts: int | None = None, read_timeout: float | None = None,
                   connect_timeout: float | None = None, checksum_headers: bool | None = None,
                   path_style: bool | None = None, guard: CapGuard | None = None, log=None,
                   parallelism: int | None = None):
    """A boto3 S3 client for `cfg`.

    The keyword arguments override the remote's settings for one use (the
    connection test wants one attempt and short timeouts; its probes try the
    other addressing style and boto3's default checksum headers).
    Every attempt goes through the remote's request limits (limits.py): the
    rate shared by every client of the remote, the client's own throttle
    (lowered on SlowDown; `log` says so) and the run's caps (`guard`).
    `parallelism`: how many threads of a run send requests at once (a sync
    job's workers); the connection pool holds at least that many plus the
    run's own thread, so no request waits for or discards a connection.
    """
    # boto3 and its s3transfer take longer to import than a command line takes to answer: loaded
    # by the first client made, not by every process that imports this module (docs/DESIGN.md §1).
    import boto3
    from botocore.config import Config

    if path_style is None:
        path_style = not cfg.uses_virtual_host()
    no_checksums = cfg.no_checksum_headers if checksum_headers is None else not checksum_headers
    options = dict(
        signature_version="s3v4",
        region_name=cfg.region,
        connect_timeout=connect_timeout if connect_timeout is not None else cfg.connect_timeout,
        read_timeout=read_timeout if read_timeout is not None else cfg.read_timeout,
        # adaptive: exponential backoff on 429/500/502/503/504, SlowDown and
        # throttling codes, plus client-side rate limiting once throttled.
        retries={"mode": "adaptive",
                 "total_max_attempts": max_attempts if max_attempts is not None else cfg.max_attempts},
        max_pool_connections=max(cfg.max_pool_connections, (parallelism or 0) + 2),
        s3={"addressing_style": "path" if path_style else "virtual"},
    )
    if no_checksums:
        # B2 and R2 reject the CRC headers boto3 sends by default.
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"

    verify = None  # botocore default: system CAs (or AWS_CA_BUNDLE)
    if cfg.tls_fingerprint:
        verify = False  # trust comes from the pinned fingerprint instead, see _pin_fingerprint
    elif cfg.ca_bundle:
        verify = cfg.ca_bundle

    # A session per client: boto3's default session is not thread-safe.
    session = boto3.session.Session(
        aws_access_key_id=cfg.access_key, aws_secret_access_key=cfg.secret_key, region_name=cfg.region)
    client = session.client("s3", endpoint_url=cfg.resolved_endpoint(), verify=verify,
                            config=Config(**options))
    if cfg.tls_fingerprint:
        _pin_fingerprint(client, cfg.tls_fingerprint)
    _disable_region_redirect(client)
    _enforce_limits(client, cfg, guard, Throttle(log))
    if no_checksums:
        client.meta.events.register("before-call.s3", _content_md5_instead_of_crc32)
    if counters is not None:
        counters.attach(client)
    return client


def _enforce_limits(client, cfg: RemoteConfig, guard: CapGuard | None, throttle: Throttle) -> None:
    """Caps first (a request that is not allowed must not wait for a slot),
    then the remote's shared rate, then the client's throttle. Registered
    before the counters, so a refused request is not counted."""
    shared = shared_rate_limiter(cfg.id, cfg.request_rate, cfg.rate_file) if cfg.request_rate else None

    def before_send(request, event_name, **kwargs):
        if guard is not None and guard.active():
            guard.before_send(request_kind(event_name.rsplit(".", 1)[-1], request.method))
        if shared is not None:
            shared.acquire()
        throttle.before_send()

    def on_response(response, **kwargs):
        if response is None:
            return None
        http_response, parsed = response
        code = (parsed.get("Error") or {}).get("Code")
        if http_response.status_code in (429, 503) or code in THROTTLE_CODES:
            throttle.throttled(f"{http_response.status_code} {code or ''}".strip())
        return None  # botocore's retry handler decides about retries

    client.meta.events.register("before-send.s3", before_send)
    client.meta.events.register("needs-retry.s3", on_response)


def _pin_fingerprint(client, fingerprint: str) -> None:
    """Accept only a server certificate whose SHA-256 matches `fingerprint`.

    urllib3 checks `assert_fingerprint` on every TLS handshake (and then
    treats the connection as verified). botocore builds its pool managers from
    _get_pool_manager_kwargs, so the pin goes there and into the existing
    manager. This reaches into botocore's URLLib3Session; tests cover it.
    """
    fp = fingerprint.replace(":", "").lower()
    http = client._endpoint.http_session
    http._manager.connection_pool_kw["assert_fingerprint"] = fp
    make_kwargs = http._get_pool_manager_kwargs

    def pinned_kwargs(**extra):
        return {**make_kwargs(**extra), "assert_fingerprint": fp}

    http._get_pool_manager_kwargs = pinned_kwargs  # for proxy managers made later


def _content_md5_instead_of_crc32(params, **kwargs):
    """Send Content-MD5 where an operation requires a checksum (DeleteObjects).

    Even with "when_required" botocore sends x-amz-checksum-crc32 there;
    B2, R2 and older S3-compatible servers answer "Missing required header
    for this request: Content-MD5". Runs after botocore chose the checksum
    and before it applies it.
    """
    checksum = (params.get("context") or {}).get("checksum") or {}
    body = params.get("body")
    if isinstance(checksum.get("request_algorithm"), dict) and isinstance(body, (bytes, bytearray)):
        del checksum["request_algorithm"]
        checksum.pop("request_algorithm_header", None)
        params["headers"]["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()


def _disable_region_redirect(client) -> None:
    """Turn off botocore's silent re-signing for another region.

    On AuthorizationHeaderMalformed/301 botocore would retry in the region
    the error names. For a configured remote we want the error instead, so
    Test Connection can tell the user to fix Region rather than every run
    paying an extra request. The redirector skips requests marked redirected.
    """
    def mark_redirected(params, context, **kwargs):
        if isinstance(context.get("s3_redirect"), dict):
            context["s3_redirect"]["redirected"] = True

    client.meta.events.register_last("before-parameter-build.s3", mark_redirected)


class RequestCounters:
    """Thread-safe counts of S3 requests by kind, with bytes and retries.

    Attached to clients through botocore events, so every HTTP attempt is
    counted, retries included. Bytes are Content-Length values: request bodies
    up, response bodies down (a streamed GET counts its full length).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._counts = _zero()

    # -- recording -----------------------------------------------------
    def attach(self, client) -> None:
        events = client.meta.events
        events.register("before-send.s3", self._on_send)
        events.register("needs-retry.s3", self._on_response)
        events.register("before-parameter-build.s3.DeleteObjects", self._on_delete_objects)

    def add(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self._counts[kind] += n

    def _on_send(self, request, event_name, **kwargs):
        operation = event_name.rsplit(".", 1)[-1]
        kind = request_kind(operation, request.method)
        body_bytes = _content_length(request.headers, request.body)
        attempt = (getattr(request, "context", None) or {}).get("retries", {}).get("attempt", 1)
        with self._lock:
            self._counts[kind] += 1
            self._counts["bytes_up"] += body_bytes
            if attempt > 1:
                self._counts["retries"] += 1

    def _on_response(self, response, operation, **kwargs):
        if response is None:  # transport error: nothing came back
            return None
        http_response, parsed = response
        down = 0
        if operation.http.get("method") != "HEAD":  # HEAD's Content-Length is the object's
            down = _int(http_response.headers.get("Content-Length"))
        code = (parsed.get("Error") or {}).get("Code")
        throttled = http_response.status_code in (429, 503) or code in THROTTLE_CODES
        with self._lock:
            self._counts["bytes_down"] += down
            if throttled:
                self._counts["throttled"] += 1
        return None  # never decide about retries; botocore's handler does

    def _on_delete_objects(self, params, **kwargs):
        keys = len((params.get("Delete") or {}).get("Objects") or [])
        self.add("delete_keys", keys)

    # -- reading -------------------------------------------------------
    def snapshot(self) -> dict:
        with self._lock:
            snap = dict(self._counts)
        snap["requests"] = sum(snap[k] for k in KINDS)
        return snap

    def merge(self, other: "RequestCounters | dict") -> None:
        """Add another counter's (or snapshot's) counts to this one."""
        data = other.snapshot() if isinstance(other, RequestCounters) else other
        with self._lock:
            for key in self._counts:
                self._counts[key] += int(data.get(key, 0))

    def reset(self) -> None:
        with self._lock:
            self._counts = _zero()

    def summary_line(self) -> str:
        return summary_line(self.snapshot())

    def __repr__(self):
        return f"RequestCounters({self.summary_line()})"


def summary_line(snap: dict) -> str:
    """'requests: 12 PUT, 3 LIST, 1 HEAD, 0 GET, 0 DELETE; 1.2 MiB up, 4 KiB down; 0 retries'"""
    parts = [f"{snap.get(k, 0)} {k}" for k in KINDS]
    if snap.get("delete_keys"):
        parts[-1] += f" ({snap['delete_keys']} keys)"
    line = (f"requests: {', '.join(parts)}; "
            f"{format_bytes(snap.get('bytes_up', 0))} up, {format_bytes(snap.get('bytes_down', 0))} down; "
            f"{snap.get('retries', 0)} retries")
    if snap.get("throttled"):
        line += f", {snap['throttled']} throttled"
    return line


def request_kind(operation: str, method: str) -> str:
    """Which counter a request goes to: ListObjectsV2 is a LIST, a
    DeleteObjects POST a DELETE, other POSTs (multipart) a PUT."""
    if operation in _LIST_OPERATIONS:
        return "LIST"
    if operation == "DeleteObjects":
        return "DELETE"
    method = (method or "GET").upper()
    if method == "POST":
        return "PUT"
    return method if method in KINDS else "GET"


def format_bytes(n: float) -> str:
    """1.2 MiB, 4 KiB, 512 B"""
    n = float(n)
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        n /= 1024
        if n < 1024 or unit == "PiB":
            return f"{n:.1f}".rstrip("0").rstrip(".") + f" {unit}"


def _zero() -> dict:
    return {**{k: 0 for k in KINDS}, "delete_keys": 0, "bytes_up": 0, "bytes_down": 0,
            "retries": 0, "throttled": 0}


def _content_length(headers, body) -> int:
    value = headers.get("Content-Length") if headers is not None else None
    if value is not None:
        return _int(value)
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    if isinstance(body, str):
        return len(body.encode())
    return 0


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
