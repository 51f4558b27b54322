"""Provider presets: what the Add Remote dialog pre-fills for each provider.

Endpoint templates use the same `{{region}}` placeholder the Endpoint field
accepts, so a preset is a valid endpoint as it stands.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True)
class ProviderPreset:
    key: str
    label: str
    endpoint_template: str
    region_example: str
    region_hint: str
    quirks: dict = field(default_factory=dict)    # RemoteConfig fields to pre-set
    key_help: str = ""                           # which permissions the key needs
    docs_url: str = ""


PRESETS: dict[str, ProviderPreset] = {
    "b2": ProviderPreset(
        key="b2",
        label="Backblaze B2",
        endpoint_template="https://s3.{{region}}.backblazeb2.com",
        region_example="us-west-004",
        region_hint="Region as shown in the bucket details (Endpoint s3.<region>.backblazeb2.com), "
                    "e.g. us-west-004 or eu-central-003; not us-west-1.",
        # the daily caps: B2's free 2,500 class B and class C calls a day (pricing.json)
        quirks={"path_style": True, "skip_if_none_match": True, "no_checksum_headers": True,
                "daily_cap_class_b": 2500, "daily_cap_class_c": 2500},
        key_help="Create an application key (App Keys > Add a New Application Key) for this bucket "
                 "with Read and Write access: capabilities listBuckets, listFiles, readFiles, "
                 "writeFiles and deleteFiles. Access Key = keyID, Secret Key = applicationKey.",
        docs_url="https://www.backblaze.com/docs/cloud-storage-s3-compatible-api",
    ),
    "wasabi": ProviderPreset(
        key="wasabi",
        label="Wasabi",
        endpoint_template="https://s3.{{region}}.wasabisys.com",
        region_example="eu-central-1",
        region_hint="Wasabi region of the bucket, e.g. us-east-1, us-west-1, eu-central-1, ap-northeast-1.",
        quirks={"path_style": True, "min_storage_days": 90},
        key_help="Use an access key of a sub-user whose policy allows s3:ListBucket on the bucket and "
                 "s3:GetObject, s3:PutObject, s3:DeleteObject on its objects. Wasabi bills every object "
                 "for at least 90 days, even when deleted earlier.",
        docs_url="https://docs.wasabi.com/docs/what-are-the-service-urls-for-wasabi-s-different-storage-regions",
    ),
    "r2": ProviderPreset(
        key="r2",
        label="Cloudflare R2",
        endpoint_template="https://<ACCOUNT_ID>.r2.cloudflarestorage.com",
        region_example="auto",
        region_hint="Always 'auto'. Replace <ACCOUNT_ID> in the endpoint with your 32-character account ID.",
        quirks={"path_style": True, "no_checksum_headers": True, "region": "auto"},
        key_help="Create an R2 API token (R2 > Manage R2 API Tokens) with the permission "
                 "Object Read & Write, scoped to this bucket. Access Key = Access Key ID, "
                 "Secret Key = Secret Access Key.",
        docs_url="https://developers.cloudflare.com/r2/api/s3/tokens/",
    ),
    "minio": ProviderPreset(
        key="minio",
        label="MinIO (self-hosted)",
        endpoint_template="https://minio.example.com:9000",
        region_example="us-east-1",
        region_hint="The server's MINIO_REGION, 'us-east-1' unless configured otherwise.",
        quirks={"path_style": True},
        key_help="Use an access key whose policy allows s3:ListBucket, s3:GetObject, s3:PutObject and "
                 "s3:DeleteObject on the bucket (the built-in 'readwrite' policy does). For a self-signed "
                 "certificate set the CA certificate or the server's SHA-256 fingerprint.",
        docs_url="https://min.io/docs/minio/linux/administration/identity-access-management/policy-based-access-control.html",
    ),
    "aws": ProviderPreset(
        key="aws",
        label="Amazon S3",
        endpoint_template="https://s3.{{region}}.amazonaws.com",
        region_example="eu-central-1",
        region_hint="The bucket's AWS region, e.g. us-east-1, eu-central-1.",
        quirks={"path_style": False},
        key_help="Use an IAM user's access key whose policy allows s3:ListBucket on arn:aws:s3:::<bucket> "
                 "and s3:GetObject, s3:PutObject, s3:DeleteObject on arn:aws:s3:::<bucket>/*.",
        docs_url="https://docs.aws.amazon.com/AmazonS3/latest/userguide/example-policies-s3.html",
    ),
    "other": ProviderPreset(
        key="other",
        label="Other S3-compatible",
        endpoint_template="https://",
        region_example="us-east-1",
        region_hint="The region your provider documents; 'us-east-1' is a common default.",
        quirks={"path_style": True},
        key_help="The key needs permission to list, read, write and delete objects in the bucket.",
    ),
}

# Host patterns that reveal the region in a known provider's endpoint.
_REGION_IN_HOST = [
    ("b2", re.compile(r"^s3\.([a-z0-9-]+)\.backblazeb2\.com$")),
    ("wasabi", re.compile(r"^s3\.([a-z0-9-]+)\.wasabisys\.com$")),
    ("aws", re.compile(r"^(?:.+\.)?s3[.-]([a-z0-9-]+)\.amazonaws\.com$")),
    ("aws", re.compile(r"^(?:.+\.)?s3\.dualstack\.([a-z0-9-]+)\.amazonaws\.com$")),
]


def get_preset(provider: str) -> ProviderPreset:
    return PRESETS.get(provider, PRESETS["other"])


def preset_endpoint(provider: str, region: str) -> str:
    """The preset endpoint with the region filled in."""
    return get_preset(provider).endpoint_template.replace("{{region}}", region)


def provider_label(provider: str) -> str:
    return get_preset(provider).label


def endpoint_host(endpoint: str) -> str:
    """The lower-case host of an endpoint URL; '' if it has none or is malformed (`http://[::1`)."""
    try:
        return (urlsplit(endpoint.strip()).hostname or "").lower()
    except ValueError:
        return ""


def detect_provider(endpoint: str) -> str:
    host = endpoint_host(endpoint)
    if host.endswith(".backblazeb2.com"):
        return "b2"
    if host.endswith(".wasabisys.com"):
        return "wasabi"
    if host.endswith(".r2.cloudflarestorage.com"):
        return "r2"
    if host.endswith(".amazonaws.com"):
        return "aws"
    return "other"


def region_from_endpoint(endpoint: str) -> str | None:
    """The region a known provider's endpoint names, e.g. B2
    https://s3.us-west-004.backblazeb2.com -> us-west-004; R2 -> auto."""
    host = endpoint_host(endpoint)
    if not host or "{{" in endpoint:
        return None
    if host.endswith(".r2.cloudflarestorage.com"):
        return "auto"
    for _provider, pattern in _REGION_IN_HOST:
        m = pattern.match(host)
        if m and m.group(1) not in ("external-1", "accelerate"):
            return m.group(1)
    if host in ("s3.amazonaws.com", "s3.wasabisys.com"):
        return "us-east-1"
    return None


def presets_for_ui() -> list[dict]:
    """Plain data for the dialog's provider drop-down (and its JavaScript)."""
    return [
        {
            "key": p.key, "label": p.label, "endpoint": p.endpoint_template,
            "region_example": p.region_example, "region_hint": p.region_hint,
            "quirks": dict(p.quirks), "key_help": p.key_help, "docs_url": p.docs_url,
        }
        for p in PRESETS.values()
    ]


def provider_min_storage_days(provider: str) -> int:
    """The days a provider bills every object for, even when deleted earlier (Wasabi: 90)."""
    preset = PRESETS.get(provider)
    return int(preset.quirks.get("min_storage_days", 0)) if preset else 0
