"""Turn any exception from talking to a remote into one actionable sentence.

Each message says what is wrong and which field (Endpoint, Bucket, Region,
Access Key, Secret Key, CA Certificate, Fingerprint) to fix. The secret key
never appears in a message.
"""
from __future__ import annotations

import re
import socket
from urllib.parse import urlsplit

from botocore import exceptions as bx

from .config import RemoteConfig

_REGION_WRONG_RE = re.compile(r"region '([^']*)' is wrong; expecting '([^']*)'")
_THROTTLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "TooManyRequests",
                   "TooManyRequestsException", "RequestLimitExceeded", "RequestThrottled"}
_ACTION = {
    "ListObjectsV2": "list", "ListObjects": "list", "HeadBucket": "list",
    "GetObject": "read", "HeadObject": "read",
    "PutObject": "write", "CreateMultipartUpload": "write", "UploadPart": "write",
    "DeleteObject": "delete", "DeleteObjects": "delete",
}


def explain_error(exc: BaseException, cfg: RemoteConfig, *, timeout: float | None = None) -> str:
    """One message for the user; `timeout` is the timeout that was in force,
    if it differs from the remote's settings."""
    if isinstance(exc, bx.ClientError):
        text = _explain_client_error(exc, cfg)
    elif isinstance(exc, bx.BotoCoreError):
        text = _explain_transport_error(exc, cfg, timeout)
    elif isinstance(exc, ValueError) and "Invalid endpoint" in str(exc):
        text = f"Endpoint '{cfg.endpoint}' is not a valid URL: fix Endpoint."
    else:
        text = f"{type(exc).__name__}: {exc}"
    return scrub_secret(text, cfg)


def scrub_secret(text: str, cfg: RemoteConfig) -> str:
    secret = cfg.secret_key or ""
    if len(secret) >= 4:
        text = text.replace(secret, "********")
    return text


def permission_help(cfg: RemoteConfig) -> str:
    """What the key needs, in the provider's own terms."""
    b = cfg.bucket
    if cfg.provider == "b2":
        return ("Give the B2 application key the capabilities listBuckets, listFiles, readFiles, "
                "writeFiles and deleteFiles for this bucket, then update Access Key and Secret Key.")
    if cfg.provider == "r2":
        return (f"Use an R2 API token with Object Read & Write permission scoped to bucket '{b}', "
                "then update Access Key and Secret Key.")
    if cfg.provider in ("aws", "wasabi"):
        return (f"Allow s3:ListBucket on arn:aws:s3:::{b} and s3:GetObject, s3:PutObject, "
                f"s3:DeleteObject on arn:aws:s3:::{b}/* in the key's policy.")
    if cfg.provider == "minio":
        return (f"Attach a policy to the key that allows s3:ListBucket, s3:GetObject, s3:PutObject "
                f"and s3:DeleteObject on bucket '{b}' (e.g. readwrite).")
    return f"Grant the key list, read, write and delete permission on bucket '{b}', or use another Access Key."


def _explain_client_error(exc: bx.ClientError, cfg: RemoteConfig) -> str:
    err = exc.response.get("Error") or {}
    meta = exc.response.get("ResponseMetadata") or {}
    code = str(err.get("Code") or "")
    message = str(err.get("Message") or "").strip()
    status = meta.get("HTTPStatusCode") or 0
    endpoint = cfg.resolved_endpoint()
    bucket = cfg.bucket

    wrong = _REGION_WRONG_RE.search(message)
    if code == "AuthorizationHeaderMalformed" or wrong:
        expected = wrong.group(2) if wrong else err.get("Region")
        if expected:
            text = f"Wrong region: the provider expects region '{expected}', not '{cfg.region}'. Set Region to '{expected}'."
        else:
            text = f"The provider rejected the authorization header ({code}: {message}): Region '{cfg.region}' is probably wrong; check Region."
        return text + _region_hint(cfg)
    if code == "PermanentRedirect" or status == 301:
        region = err.get("Region") or (meta.get("HTTPHeaders") or {}).get("x-amz-bucket-region")
        text = f"Wrong endpoint region: bucket '{bucket}' is not served by {endpoint} (PermanentRedirect)."
        if region:
            text += f" The bucket is in region '{region}': set Region to '{region}' and Endpoint to that region's endpoint."
        else:
            text += " Set Endpoint and Region to the bucket's region."
        return text
    if code in ("AccessDenied", "403", "AllAccessDisabled") or (status == 403 and code not in (
            "SignatureDoesNotMatch", "InvalidAccessKeyId", "RequestTimeTooSkewed")):
        action = _ACTION.get(exc.operation_name, "access")
        return f"Access denied: the key lacks {action} permission on bucket '{bucket}'. {permission_help(cfg)}"
    if code == "SignatureDoesNotMatch":
        return (f"Signature mismatch: the Secret Key is wrong for Access Key '{cfg.access_key}'. "
                "Re-enter Secret Key exactly as the provider showed it.")
    if code in ("InvalidAccessKeyId", "InvalidToken"):
        return (f"The provider does not know Access Key '{cfg.access_key}': check Access Key "
                "(and that Endpoint belongs to the provider that issued it).")
    if code == "NoSuchBucket" or (code == "404" and exc.operation_name == "HeadBucket"):
        return f"Bucket '{bucket}' does not exist at {endpoint}: create it or fix Bucket."
    if code == "InvalidBucketName":
        return f"Bucket '{bucket}' is not a valid bucket name for this provider: fix Bucket."
    if code == "RequestTimeTooSkewed":
        return ("Clock skew: this server's clock differs too much from the provider's (RequestTimeTooSkewed). "
                "Fix the system time (enable NTP) and try again.")
    if code in _THROTTLE_CODES or status == 429:
        return (f"The provider is throttling requests ({code or status}, HTTP {status}): "
                "try again later or lower the request rate.")
    if status >= 500:
        return f"The provider answered HTTP {status} ({code}: {message}): a provider-side error; try again later."
    return f"S3 error {code} (HTTP {status}) during {exc.operation_name}: {message}"


def _region_hint(cfg: RemoteConfig) -> str:
    if cfg.provider == "b2":
        return (" Backblaze B2 regions look like us-west-004 (from the bucket's endpoint "
                "s3.<region>.backblazeb2.com), not us-west-1.")
    if cfg.provider == "r2":
        return " Cloudflare R2 uses region 'auto'."
    return ""


def _explain_transport_error(exc: bx.BotoCoreError, cfg: RemoteConfig, timeout: float | None) -> str:
    url = exc.kwargs.get("endpoint_url") or cfg.resolved_endpoint()
    host, hostport = _host_port(url)
    cause = exc.kwargs.get("error")
    reason = str(cause) if cause is not None else str(exc)

    if isinstance(exc, bx.InvalidRegionError):
        return f"Region '{cfg.region}' is not a valid region name for S3 requests: fix Region (e.g. us-west-004, eu-central-1 or auto)."
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return "Access Key and Secret Key are required."
    if isinstance(exc, bx.ParamValidationError):
        if "bucket name" in str(exc).lower():
            return f"Bucket '{cfg.bucket}' is not a valid bucket name: fix Bucket."
        return f"Invalid request: {exc}"
    if isinstance(exc, bx.SSLError):
        return _explain_tls(reason, hostport)
    if isinstance(exc, bx.ConnectTimeoutError):
        t = timeout if timeout is not None else cfg.connect_timeout
        return f"No connection to {hostport} within {t:g} s: check Endpoint, the firewall and any proxy."
    if isinstance(exc, bx.ReadTimeoutError):
        t = timeout if timeout is not None else cfg.read_timeout
        return (f"No answer from {hostport} within {t:g} s: the server accepted the connection but did not "
                "respond. Check Endpoint (is it an S3 service?) and any proxy.")
    if isinstance(exc, bx.ProxyConnectionError):
        return f"Could not connect to the HTTP proxy {exc.kwargs.get('proxy_url', '')}: check the proxy settings."
    if isinstance(exc, bx.EndpointConnectionError):
        if _caused_by(cause, socket.gaierror) or "NameResolutionError" in reason or "Name or service not known" in reason:
            text = f"Host name '{host}' does not resolve: check Endpoint."
            if cfg.uses_virtual_host():
                text += " With virtual-host addressing the bucket is part of the host name; try path-style addressing."
            return text
        if _caused_by(cause, ConnectionRefusedError) or "Connection refused" in reason:
            return f"Connection refused: nothing listens at {hostport}. Check Endpoint (host and port)."
        return f"Could not connect to {hostport} ({_short(reason)}): check Endpoint and the network."
    if isinstance(exc, bx.ConnectionClosedError):
        return (f"{hostport} closed the connection without answering: check Endpoint "
                "(https:// or http://, and the port).")
    return f"{type(exc).__name__}: {exc}"


def _explain_tls(reason: str, hostport: str) -> str:
    m = re.search(r'Fingerprints did not match\. Expected "([0-9a-fA-F:]+)", got "([0-9a-fA-F:]+)"', reason)
    if m:
        got = m.group(2).replace(":", "").lower()
        got = ":".join(got[i:i + 2] for i in range(0, len(got), 2))
        return (f"TLS fingerprint mismatch: {hostport} presents a certificate with SHA-256 fingerprint {got}, "
                "not the configured one. If the certificate was replaced on purpose, update Fingerprint.")
    m = re.search(r"certificate verify failed: (.+?) \(_ssl", reason)
    if m or "CERTIFICATE_VERIFY_FAILED" in reason:
        why = m.group(1) if m else "certificate verify failed"
        return (f"TLS certificate of {hostport} is not trusted ({why}). For a self-signed certificate "
                "set CA Certificate or Fingerprint; otherwise check Endpoint.")
    return f"TLS handshake with {hostport} failed ({_short(reason)}): check Endpoint (https:// or http://, and the port)."


def _host_port(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    host = parts.hostname or url
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or (443 if parts.scheme == "https" else 80)
    shown = f"[{host}]" if ":" in host else host
    return host, f"{shown}:{port}"


def _caused_by(exc: BaseException | None, kind: type) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
