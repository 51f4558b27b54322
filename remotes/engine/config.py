"""Settings of one S3 remote, and the rules each field must follow.

Validators return a ValidationError naming the field (or None); they never
raise, so a form or the CLI can collect and show all errors at once.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, fields
from urllib.parse import urlsplit

PROVIDERS = ("b2", "wasabi", "r2", "minio", "aws", "other")
OBJECT_LOCK_MODES = ("governance", "compliance")
MAX_OBJECT_LOCK_DAYS = 36500  # S3's limit for a retention period (100 years)

_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{2,31}")
_REGION_RE = re.compile(r"[_a-z\d][-_a-z\d]+")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_HOST_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_FINGERPRINT_RE = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){31}")
_TEMPLATES = ("{{region}}", "{{bucket}}")


class ValidationError(ValueError):
    """A bad value for one field; `message` is shown next to that field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __eq__(self, other):
        return isinstance(other, ValidationError) and (self.field, self.message) == (other.field, other.message)

    def __hash__(self):
        return hash((self.field, self.message))


@dataclass
class RemoteConfig:
    id: str
    endpoint: str
    bucket: str
    region: str
    access_key: str
    secret_key: str = field(repr=False)
    provider: str = "other"
    path_style: bool = True
    skip_if_none_match: bool = False
    delete_via_delete_object: bool = False
    no_checksum_headers: bool = True
    ca_bundle: str | None = None          # PEM file trusted for this remote (self-signed MinIO)
    tls_fingerprint: str | None = None    # sha256 of the server certificate, "aa:bb:…" as PBS
    connect_timeout: float = 10
    read_timeout: float = 60
    max_attempts: int = 5
    max_pool_connections: int = 16
    min_storage_days: int = 0
    object_lock_days: int = 0             # every pushed object locked this long (0: no lock), docs/DESIGN.md §3
    object_lock_mode: str = "governance"  # OBJECT_LOCK_MODES
    request_rate: float | None = None     # requests per second, every method (limits.py)
    rate_file: str | None = None          # where processes share the pace of request_rate (limits.py)

    def resolved_endpoint(self) -> str:
        """The endpoint URL with `{{region}}` filled in.

        A `{{bucket}}.` host prefix is dropped: that form means virtual-host
        addressing, where boto3 itself puts the bucket in front of the host.
        """
        url = self.endpoint.strip().rstrip("/").replace("{{region}}", self.region)
        return url.replace("{{bucket}}.", "").replace("{{bucket}}", "")

    def uses_virtual_host(self) -> bool:
        return "{{bucket}}" in self.endpoint or not self.path_style

    def validate(self) -> list[ValidationError]:
        return validate_config(self)

    def quirks(self) -> dict:
        return {name: getattr(self, name) for name in QUIRK_FIELDS}


QUIRK_FIELDS = ("path_style", "skip_if_none_match", "delete_via_delete_object", "no_checksum_headers")


def config_field_names() -> list[str]:
    return [f.name for f in fields(RemoteConfig)]


def validate_remote_id(value: str) -> ValidationError | None:
    if not value or not _ID_RE.fullmatch(value):
        return ValidationError(
            "id", "3-32 characters: letters, digits, '_' and '-', not starting with '-'")
    return None


def validate_endpoint(value: str) -> ValidationError | None:
    value = (value or "").strip()
    if not value:
        return ValidationError("endpoint", "required, e.g. https://s3.us-west-004.backblazeb2.com")
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an unclosed IPv6 bracket: http://[::1
        return ValidationError("endpoint", "is not a valid URL, e.g. https://s3.us-west-004.backblazeb2.com "
                                           "or http://[::1]:9000")
    if "[" in parts.netloc and not re.fullmatch(r"\[[^\]]+\](:\d*)?", parts.netloc):
        return ValidationError("endpoint", "is not a valid URL: an IPv6 address is written [::1] or [::1]:9000")
    if parts.scheme not in ("http", "https"):
        return ValidationError("endpoint", "must start with https:// (or http:// for a local test server)")
    # Templates are placeholders for host labels; check the host with a sample value.
    host = (parts.hostname or "")
    sample = host.replace("{{region}}", "region").replace("{{bucket}}", "bucket")
    if not sample:
        return ValidationError("endpoint", "needs a host name, e.g. https://s3.eu-central-1.wasabisys.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return ValidationError("endpoint", "must be only scheme, host and port: no path or query (the bucket goes in Bucket)")
    if parts.username or parts.password:
        return ValidationError("endpoint", "must not contain credentials")
    try:
        _ = parts.port  # reading it raises ValueError on a bad port
    except ValueError:
        return ValidationError("endpoint", "has an invalid port")
    stripped = value.replace("{{region}}", "").replace("{{bucket}}", "")
    if "{" in stripped or "}" in stripped:
        return ValidationError("endpoint", "only the templates {{region}} and {{bucket}} are allowed")
    if not _is_ip(sample) and not all(_HOST_LABEL_RE.fullmatch(label) for label in sample.rstrip(".").split(".")):
        return ValidationError("endpoint", f"'{host}' is not a valid host name")
    return None


def validate_bucket(value: str) -> ValidationError | None:
    value = value or ""
    if not 3 <= len(value) <= 63:
        return ValidationError("bucket", "must be 3-63 characters long")
    if not _BUCKET_RE.fullmatch(value):
        return ValidationError(
            "bucket", "may contain only lowercase letters, digits, '-' and '.', "
                      "and must start and end with a letter or digit")
    if ".." in value:
        return ValidationError("bucket", "must not contain '..'")
    if _is_ip(value):
        return ValidationError("bucket", "must not look like an IP address")
    return None


def validate_region(value: str) -> ValidationError | None:
    if value == "auto" or (value and _REGION_RE.fullmatch(value)):
        return None
    return ValidationError("region", "lowercase letters, digits, '-' and '_' (e.g. us-west-004, eu-central-1), or 'auto'")


def validate_fingerprint(value: str | None) -> ValidationError | None:
    if value and not _FINGERPRINT_RE.fullmatch(value.strip()):
        return ValidationError("tls_fingerprint", "SHA-256 fingerprint as 32 hex bytes separated by ':'")
    return None


def validate_object_lock(days, mode: str) -> list[ValidationError]:
    """The Object Lock period (whole days, 0 = off) and mode."""
    errors = []
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_OBJECT_LOCK_DAYS:
        errors.append(ValidationError("object_lock_days", f"a whole number of days from 0 (no lock) "
                                                          f"to {MAX_OBJECT_LOCK_DAYS}"))
    if mode not in OBJECT_LOCK_MODES:
        errors.append(ValidationError("object_lock_mode", f"one of {', '.join(OBJECT_LOCK_MODES)}"))
    return errors


def validate_config(cfg: RemoteConfig) -> list[ValidationError]:
    errors = [
        validate_remote_id(cfg.id),
        validate_endpoint(cfg.endpoint),
        validate_bucket(cfg.bucket),
        validate_region(cfg.region),
        validate_fingerprint(cfg.tls_fingerprint),
    ]
    if not cfg.access_key:
        errors.append(ValidationError("access_key", "required"))
    if not cfg.secret_key:
        errors.append(ValidationError("secret_key", "required"))
    if cfg.provider not in PROVIDERS:
        errors.append(ValidationError("provider", f"one of {', '.join(PROVIDERS)}"))
    for name in ("connect_timeout", "read_timeout", "max_attempts", "max_pool_connections"):
        if getattr(cfg, name) <= 0:
            errors.append(ValidationError(name, "must be greater than 0"))
    if cfg.min_storage_days < 0:
        errors.append(ValidationError("min_storage_days", "must not be negative"))
    errors.extend(validate_object_lock(cfg.object_lock_days, cfg.object_lock_mode))
    return [e for e in errors if e is not None]


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip("[]"))
        return True
    except ValueError:
        return False
