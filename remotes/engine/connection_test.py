"""Test Connection: can this remote be used, and which quirks does it need?

The ListObjectsV2 call alone decides ok/fail. The optional probes write,
read and delete small `.pbsweb-connection-test-*` objects (always removed
again) and report what the provider supports as messages and as proposed
quirk settings. Nothing raises: every failure becomes a message.
"""
from __future__ import annotations

import ipaddress
import secrets
import time
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from .client import RequestCounters, make_s3_client
from .config import (RemoteConfig, validate_bucket, validate_endpoint, validate_fingerprint,
                     validate_region)
from .errors import explain_error, permission_help

PROBE_PREFIX = ".pbsweb-connection-test-"
CLOCK_SKEW_WARN_S = 60
_FIELD_LABELS = {"endpoint": "Endpoint", "bucket": "Bucket", "region": "Region",
                 "tls_fingerprint": "Fingerprint", "access_key": "Access Key", "secret_key": "Secret Key"}


@dataclass
class Message:
    level: str  # "ok" | "error" | "warning" | "info"
    text: str


@dataclass
class ConnectionTestResult:
    ok: bool
    latency_ms: float
    messages: list[Message] = field(default_factory=list)
    proposed: dict = field(default_factory=dict)   # quirk settings the probes suggest changing
    details: dict = field(default_factory=dict)

    def add(self, level: str, text: str) -> None:
        self.messages.append(Message(level, text))

    def texts(self, level: str | None = None) -> list[str]:
        return [m.text for m in self.messages if level is None or m.level == level]

    def to_dict(self) -> dict:
        return asdict(self)


def test_connection(cfg: RemoteConfig, *, write_probe: bool = False, probe_features: bool = False,
                    timeout: float = 10, counters: RequestCounters | None = None) -> ConnectionTestResult:
    """Run the connection test. `counters` (optional) receives every request
    made; the counts are also in details["requests"]."""
    counters = counters if counters is not None else RequestCounters()
    result = ConnectionTestResult(ok=False, latency_ms=0.0)
    result.details = {"endpoint": cfg.resolved_endpoint(), "bucket": cfg.bucket}
    try:
        _run(cfg, result, counters, timeout, write_probe, probe_features)
    except Exception as exc:  # a bug in a probe must still not escape
        result.add("error", explain_error(exc, cfg, timeout=timeout))
    result.details["requests"] = counters.snapshot()
    result.details["summary"] = counters.summary_line()
    return result


# The name starts with test_, so keep pytest from collecting it where imported.
test_connection.__test__ = False


def _run(cfg, result, counters, timeout, write_probe, probe_features):
    problems = _field_problems(cfg)
    if problems:
        for text in problems:
            result.add("error", text)
        return

    def client(**overrides):
        # One attempt and short timeouts: the user waits for this answer.
        return make_s3_client(cfg, counters, max_attempts=1, read_timeout=timeout,
                              connect_timeout=min(cfg.connect_timeout, timeout), **overrides)

    try:
        s3 = client()
        started = time.time()
        t0 = time.perf_counter()
        resp = s3.list_objects_v2(Bucket=cfg.bucket, MaxKeys=1)
        result.latency_ms = round((time.perf_counter() - t0) * 1000, 1)
    except Exception as exc:
        result.add("error", explain_error(exc, cfg, timeout=timeout))
        return
    result.ok = True
    result.details["latency_ms"] = result.latency_ms
    result.details["bucket_empty"] = not resp.get("KeyCount") and not resp.get("Contents")
    result.add("ok", f"Connected to {cfg.resolved_endpoint()}: listed bucket '{cfg.bucket}' in {result.latency_ms:.0f} ms.")
    _check_clock(resp, started + result.latency_ms / 2000, result)

    created: list[str] = []  # probe objects still to delete
    probe_id = secrets.token_hex(8)
    try:
        if write_probe:
            _write_probe(s3, cfg, PROBE_PREFIX + probe_id, created, result, timeout)
        if probe_features:
            _probe_addressing(cfg, client, result, timeout)
            _probe_checksum_headers(client, cfg, PROBE_PREFIX + probe_id + "-crc", created, result, timeout)
            if result.proposed.get("no_checksum_headers"):
                s3 = client(checksum_headers=False)  # the other probes must not fail on this
            _probe_conditional_put(s3, cfg, PROBE_PREFIX + probe_id + "-ifnm", created, result, timeout)
            _probe_delete_objects(s3, cfg, PROBE_PREFIX + probe_id + "-del", created, result, timeout)
        if probe_features or cfg.object_lock_days:
            # a lock period is useless without Object Lock on the bucket: always checked then
            _probe_bucket_state(s3, cfg, result)
    finally:
        _cleanup(s3, cfg, created, result, timeout)


def _field_problems(cfg: RemoteConfig) -> list[str]:
    errors = [validate_endpoint(cfg.endpoint), validate_bucket(cfg.bucket),
              validate_region(cfg.region), validate_fingerprint(cfg.tls_fingerprint)]
    texts = [f"{_FIELD_LABELS[e.field]}: {e.message}." for e in errors if e is not None]
    if not cfg.access_key:
        texts.append("Access Key: required.")
    if not cfg.secret_key:
        texts.append("Secret Key: required.")
    return texts


def _check_clock(resp: dict, local_time: float, result: ConnectionTestResult) -> None:
    date = ((resp.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}).get("date")
    try:
        server_time = parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return
    skew = round(server_time - local_time, 1)
    result.details["clock_skew_s"] = skew
    if abs(skew) > CLOCK_SKEW_WARN_S:
        direction = "behind" if skew > 0 else "ahead of"
        result.add("warning", f"Clock skew: this server's clock is {abs(skew):.0f} s {direction} the provider's. "
                              "Requests fail once it exceeds 15 minutes; enable NTP.")


def _write_probe(s3, cfg, key, created, result, timeout):
    payload = f"pbsweb connection test {key}\n".encode()
    try:
        s3.put_object(Bucket=cfg.bucket, Key=key, Body=payload, ContentType="application/octet-stream")
        created.append(key)
        back = s3.get_object(Bucket=cfg.bucket, Key=key)["Body"].read()
        if back != payload:
            result.add("error", f"Write probe: the object read back differs from what was written "
                                f"({len(payload)} bytes written, {len(back)} read).")
            return
        s3.delete_object(Bucket=cfg.bucket, Key=key)
        created.remove(key)
    except Exception as exc:
        result.add("error", "Write probe failed: " + explain_error(exc, cfg, timeout=timeout))
        return
    result.details["write_probe"] = True
    result.add("ok", "Write probe: uploaded, read back and deleted a test object.")


def _probe_addressing(cfg, client, result, timeout):
    current = "path" if not cfg.uses_virtual_host() else "virtual-host"
    other = "virtual-host" if current == "path" else "path"
    host = urlsplit(cfg.resolved_endpoint()).hostname or ""
    features = result.details.setdefault("features", {})
    if _is_ip(host) or host == "localhost":
        # botocore falls back to path style for an IP endpoint; *.localhost does not resolve
        features["other_addressing"] = None
        result.add("info", "Addressing: path style works; virtual-host style is not possible with an IP address "
                           "or localhost as Endpoint.")
        return
    try:
        client(path_style=(other == "path")).list_objects_v2(Bucket=cfg.bucket, MaxKeys=1)
    except Exception as exc:
        features["other_addressing"] = False
        result.add("info", f"Addressing: {current} style works; {other} style does not "
                           f"({explain_error(exc, cfg, timeout=timeout)}).")
        return
    features["other_addressing"] = True
    result.add("info", f"Addressing: {current} style works; {other} style works too.")


def _probe_conditional_put(s3, cfg, key, created, result, timeout):
    """A second PUT with If-None-Match: * must fail with 412."""
    features = result.details.setdefault("features", {})
    verdict, why = None, ""
    try:
        s3.put_object(Bucket=cfg.bucket, Key=key, Body=b"1", IfNoneMatch="*")
        created.append(key)
        s3.put_object(Bucket=cfg.bucket, Key=key, Body=b"2", IfNoneMatch="*")
        verdict, why = False, "a second PUT overwrote the object"
    except ClientError as exc:
        code, status = _code_status(exc)
        if code == "PreconditionFailed" or status == 412:
            verdict = True
        elif code == "ConditionalRequestConflict" or status == 409:
            verdict = True  # S3's answer to concurrent conditional writes: the header is honoured
        elif status in (501, 400) or code in ("NotImplemented", "InvalidArgument", "InvalidRequest"):
            verdict, why = False, f"{code or status}, HTTP {status}"
        else:
            why = explain_error(exc, cfg, timeout=timeout)
    except Exception as exc:
        why = explain_error(exc, cfg, timeout=timeout)

    features["if_none_match"] = verdict
    name = "Conditional PUT (If-None-Match: *)"
    if verdict is None:
        result.add("warning", f"{name}: could not be probed: {why}")
    elif verdict:
        if cfg.skip_if_none_match:
            result.proposed["skip_if_none_match"] = False
            result.add("info", f"{name}: supported; turn off 'Skip If-None-Match header' so chunks are never overwritten.")
        else:
            result.add("ok", f"{name}: supported.")
    elif cfg.skip_if_none_match:
        result.add("info", f"{name}: not supported ({why}); 'Skip If-None-Match header' is already on.")
    else:
        result.proposed["skip_if_none_match"] = True
        result.add("warning", f"{name}: not supported ({why}): turn on 'Skip If-None-Match header'.")


def _probe_checksum_headers(client, cfg, key, created, result, timeout):
    """PUT with boto3's default checksum headers (B2 and R2 reject them)."""
    features = result.details.setdefault("features", {})
    name = "Default checksum headers"
    try:
        client(checksum_headers=True).put_object(Bucket=cfg.bucket, Key=key, Body=b"checksum probe")
        created.append(key)
    except ClientError as exc:
        code, status = _code_status(exc)
        if status in (400, 501) or code in ("NotImplemented", "InvalidArgument", "InvalidRequest"):
            features["checksum_headers"] = False
            if cfg.no_checksum_headers:
                result.add("info", f"{name}: rejected ({code}, HTTP {status}); 'No checksum headers' is already on.")
            else:
                result.proposed["no_checksum_headers"] = True
                result.add("warning", f"{name}: rejected ({code}, HTTP {status}): turn on 'No checksum headers'.")
            return
        features["checksum_headers"] = None
        result.add("warning", f"{name}: could not be probed: {explain_error(exc, cfg, timeout=timeout)}")
        return
    except Exception as exc:
        features["checksum_headers"] = None
        result.add("warning", f"{name}: could not be probed: {explain_error(exc, cfg, timeout=timeout)}")
        return
    features["checksum_headers"] = True
    result.add("info", f"{name}: accepted.")


def _probe_delete_objects(s3, cfg, key, created, result, timeout):
    """Delete the probe objects with one DeleteObjects request."""
    features = result.details.setdefault("features", {})
    name = "DeleteObjects (batch delete)"
    try:
        s3.put_object(Bucket=cfg.bucket, Key=key, Body=b"delete probe")
        created.append(key)
        keys = list(created)
        resp = s3.delete_objects(Bucket=cfg.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": False})
    except ClientError as exc:
        code, status = _code_status(exc)
        if status == 501 or code == "NotImplemented":
            features["delete_objects"] = False
            if cfg.delete_via_delete_object:
                result.add("info", f"{name}: not supported; 'Delete via DeleteObject' is already on.")
            else:
                result.proposed["delete_via_delete_object"] = True
                result.add("warning", f"{name}: not supported ({code}, HTTP {status}): turn on 'Delete via DeleteObject'.")
            return
        features["delete_objects"] = None
        result.add("warning", f"{name}: could not be probed: {explain_error(exc, cfg, timeout=timeout)}")
        return
    except Exception as exc:
        features["delete_objects"] = None
        result.add("warning", f"{name}: could not be probed: {explain_error(exc, cfg, timeout=timeout)}")
        return
    # DeleteObjects answers 200 even when keys fail; the failures are in Errors.
    failed = {e.get("Key"): e.get("Code") for e in resp.get("Errors") or []}
    for k in keys:
        if k not in failed:
            created.remove(k)
    if failed:
        features["delete_objects"] = None
        codes = ", ".join(sorted({str(c) for c in failed.values()}))
        result.add("warning", f"{name}: the request succeeded but {len(failed)} of {len(keys)} keys "
                              f"were not deleted ({codes}). {_delete_hint(failed, cfg)}")
        return
    features["delete_objects"] = True
    if cfg.delete_via_delete_object:
        result.proposed["delete_via_delete_object"] = False
        result.add("info", f"{name}: supported; turn off 'Delete via DeleteObject' to delete up to 1000 objects per request.")
    else:
        result.add("ok", f"{name}: supported.")


def _delete_hint(failed: dict, cfg) -> str:
    if "AccessDenied" in failed.values():
        return "The key lacks delete permission. " + permission_help(cfg)
    return "Check the key's delete permission."


# Storage classes a GET cannot read before the object is restored from the archive.
ARCHIVE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")


def _probe_bucket_state(s3, cfg, result):
    """Versioning, Object Lock (and its default retention), lifecycle rules that archive objects."""
    features = result.details.setdefault("features", {})
    try:
        status = s3.get_bucket_versioning(Bucket=cfg.bucket).get("Status")
        features["versioning"] = status or "Off"
        if status == "Enabled" and not cfg.object_lock_days:
            result.add("warning", "Bucket versioning: enabled. Deleted chunks stay stored (and billed) as old "
                                  "versions until a lifecycle rule expires them.")
        else:
            result.add("info", f"Bucket versioning: {(status or 'off').lower()}.")
    except Exception as exc:
        features["versioning"] = None
        result.add("info", f"Bucket versioning: could not be read ({_code_or_name(exc)}).")
    _probe_object_lock(s3, cfg, result, features)
    _probe_lifecycle(s3, cfg, result, features)


def _probe_object_lock(s3, cfg, result, features):
    code = ""
    try:
        conf = s3.get_object_lock_configuration(Bucket=cfg.bucket).get("ObjectLockConfiguration") or {}
    except ClientError as exc:
        code, _ = _code_status(exc)
        conf = None
    except Exception as exc:
        code, conf = _code_or_name(exc), None
    if conf is None and code != "ObjectLockConfigurationNotFoundError":
        features["object_lock"] = None
        result.add("warning" if cfg.object_lock_days else "info", f"Object Lock: could not be read ({code}).")
        return
    enabled = bool(conf) and conf.get("ObjectLockEnabled") == "Enabled"
    features["object_lock"] = enabled
    if not enabled:
        if cfg.object_lock_days:
            result.add("error", f"Object Lock days: the bucket '{cfg.bucket}' has no Object Lock, so pushes "
                                f"cannot lock objects for {cfg.object_lock_days} days. Object Lock can only be "
                                "turned on when a bucket is created: use a new bucket with Object Lock, "
                                "or set Object Lock days to 0.")
        else:
            result.add("info", "Object Lock: not enabled.")
        return
    rule = (conf.get("Rule") or {}).get("DefaultRetention") or {}
    period = f"{rule['Days']} days" if "Days" in rule else f"{rule['Years']} years" if "Years" in rule else ""
    features["default_retention"] = f"{rule.get('Mode', '').lower()} {period}".strip() or None
    retention = (f"default retention {rule.get('Mode', '').lower()} {period}" if rule
                 else "no default retention")
    if cfg.object_lock_days:
        result.add("ok", f"Object Lock: enabled ({retention}); every pushed object is locked "
                         f"{cfg.object_lock_days} days ({cfg.object_lock_mode}).")
    else:
        result.add("warning", f"Object Lock: enabled ({retention}). Pruned snapshots and unused chunks "
                              "cannot be deleted before their retention ends.")


def _probe_lifecycle(s3, cfg, result, features):
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=cfg.bucket).get("Rules") or []
    except ClientError as exc:
        code, _ = _code_status(exc)
        if code == "NoSuchLifecycleConfiguration":
            features["archive_rules"] = []
            result.add("info", "Lifecycle rules: none.")
        else:
            features["archive_rules"] = None
            result.add("info", f"Lifecycle rules: could not be read ({code}).")
        return
    except Exception as exc:
        features["archive_rules"] = None
        result.add("info", f"Lifecycle rules: could not be read ({_code_or_name(exc)}).")
        return
    archiving = []
    for rule in rules:
        if rule.get("Status") != "Enabled":
            continue
        for t in (rule.get("Transitions") or []) + (rule.get("NoncurrentVersionTransitions") or []):
            if t.get("StorageClass") in ARCHIVE_CLASSES:
                when = (f"after {t['Days']} days" if "Days" in t else f"after {t['NoncurrentDays']} days "
                        "as an old version" if "NoncurrentDays" in t else f"from {t.get('Date')}")
                archiving.append(f"rule '{rule.get('ID') or '(no ID)'}' moves objects to {t['StorageClass']} {when}")
    features["archive_rules"] = archiving
    if archiving:
        result.add("warning", "Lifecycle rules: " + "; ".join(archiving) + ". Objects in GLACIER or "
                   "DEEP_ARCHIVE cannot be read at once, so pull and restore fail on them; remove the rule "
                   "or use GLACIER_IR (instant retrieval).")
    else:
        result.add("info", f"Lifecycle rules: {len(rules)}, none moves objects to an archive class.")


def _cleanup(s3, cfg, created, result, timeout):
    for key in list(created):
        try:
            s3.delete_object(Bucket=cfg.bucket, Key=key)
            created.remove(key)
        except Exception as exc:
            result.add("warning", f"Could not delete the probe object '{key}': "
                                  f"{explain_error(exc, cfg, timeout=timeout)} Delete it by hand.")


def _code_status(exc: ClientError) -> tuple[str, int]:
    return (str((exc.response.get("Error") or {}).get("Code") or ""),
            (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)


def _code_or_name(exc: Exception) -> str:
    return _code_status(exc)[0] if isinstance(exc, ClientError) else type(exc).__name__


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
