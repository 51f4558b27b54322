"""S3 remotes: where sync jobs replicate datastores to.

The secret key is kept Fernet-encrypted (pbsweb.secretbox) and only
decrypted in-process to build a client; it is never rendered, logged or
returned by the API.
"""
import datetime
import os
from pathlib import Path

from django.db import models, transaction
from django.db.models import F
from django.utils import timezone

from pbsweb.paths import data_file
from pbsweb.secretbox import decrypt_secret, encrypt_secret
from remotes.engine import cost, providers
from remotes.engine.client import make_s3_client
from remotes.engine.config import OBJECT_LOCK_MODES, PROVIDERS, RemoteConfig

PROVIDER_CHOICES = [(key, providers.get_preset(key).label) for key in PROVIDERS]
USAGE_KINDS = ("get", "put", "head", "delete", "list")
ON_CAP_CHOICES = [("stop", "Stop the run"), ("pause", "Pause until the window resets")]


class Remote(models.Model):
    remote_id = models.CharField("ID", max_length=32, unique=True)
    provider = models.CharField(max_length=16, default="other")  # remotes.engine.config.PROVIDERS
    endpoint = models.CharField(max_length=255)
    bucket = models.CharField(max_length=63)
    region = models.CharField(max_length=64)
    access_key = models.CharField(max_length=255)
    secret_key_encrypted = models.TextField()
    path_style = models.BooleanField(default=True)
    skip_if_none_match = models.BooleanField(default=False)
    delete_via_delete_object = models.BooleanField(default=False)
    no_checksum_headers = models.BooleanField(default=True)
    ca_bundle = models.TextField(blank=True)          # PEM, for a self-signed MinIO
    tls_fingerprint = models.CharField(max_length=95, blank=True)
    min_storage_days = models.PositiveIntegerField(default=0)
    # Object Lock (docs/DESIGN.md §3): every pushed object is locked this many days (0: off).
    object_lock_days = models.PositiveIntegerField(default=0)
    object_lock_mode = models.CharField(max_length=12, default="governance",
                                        choices=[(m, m.capitalize()) for m in OBJECT_LOCK_MODES])
    # The last push's lock extensions (one PutObjectRetention request each); the sync app writes them.
    locks_extended = models.PositiveIntegerField(default=0)
    locks_extended_time = models.DateTimeField(null=True, blank=True)
    comment = models.CharField(max_length=255, blank=True)
    # The last Test Connection of the saved remote.
    last_test_ok = models.BooleanField(null=True, blank=True)
    last_test_time = models.DateTimeField(null=True, blank=True)
    last_test_message = models.TextField(blank=True)
    last_test_latency_ms = models.FloatField(null=True, blank=True)
    last_test_upid = models.CharField(max_length=512, blank=True)
    # Request limits (remotes/engine/limits.py): every method, every job and drill on the remote.
    request_rate = models.PositiveIntegerField("Requests per second", null=True, blank=True)
    daily_cap_class_a = models.PositiveBigIntegerField("Daily cap, class A", null=True, blank=True)
    daily_cap_class_b = models.PositiveBigIntegerField("Daily cap, class B", null=True, blank=True)
    daily_cap_class_c = models.PositiveBigIntegerField("Daily cap, class C", null=True, blank=True)
    monthly_budget = models.DecimalField("Monthly budget (USD)", max_digits=12, decimal_places=2,
                                         null=True, blank=True)
    on_cap = models.CharField("At a cap", max_length=5, choices=ON_CAP_CHOICES, default="stop")
    # The user's own prices (MinIO, a provider not listed, a negotiated rate): each one set
    # replaces the provider's list price for that part (remotes.engine.cost.apply_override).
    price_storage_tb_month = models.DecimalField("Storage, $/TB-month", max_digits=14, decimal_places=6,
                                                 null=True, blank=True)
    price_class_a = models.DecimalField("Class A, $/1,000", max_digits=14, decimal_places=6, null=True, blank=True)
    price_class_b = models.DecimalField("Class B, $/1,000", max_digits=14, decimal_places=6, null=True, blank=True)
    price_class_c = models.DecimalField("Class C, $/1,000", max_digits=14, decimal_places=6, null=True, blank=True)
    price_egress_gb = models.DecimalField("Egress, $/GB", max_digits=14, decimal_places=6, null=True, blank=True)
    price_date = models.DateField("Prices as of", null=True, blank=True)   # set when the user's prices change
    # Bytes the remote holds; the sync app updates it after each run.
    stored_bytes = models.BigIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["remote_id"]

    def __str__(self) -> str:
        return self.remote_id

    type = "s3"  # the only remote type (PBS's `--type s3`)

    # -- secret --------------------------------------------------------------
    @property
    def secret_key(self) -> str:
        return decrypt_secret(self.secret_key_encrypted) if self.secret_key_encrypted else ""

    @secret_key.setter
    def secret_key(self, plain: str) -> None:
        self.secret_key_encrypted = encrypt_secret(plain)

    # -- engine --------------------------------------------------------------
    @property
    def provider_label(self) -> str:
        return providers.provider_label(self.provider)

    @property
    def effective_min_storage_days(self) -> int:
        """Days every object is billed for: the remote's setting or its provider's minimum."""
        return max(self.min_storage_days or 0, providers.provider_min_storage_days(self.provider))

    def resolved_endpoint(self) -> str:
        return self.config(secret_key="", write_ca=False).resolved_endpoint()

    def ca_bundle_path(self) -> Path:
        return data_file("remotes", "remote_id", self.remote_id or "new", "-ca.pem")

    def write_ca_bundle(self) -> str | None:
        """The CA PEM as a file for botocore (rewritten only when it changed)."""
        if not self.ca_bundle.strip():
            return None
        path = self.ca_bundle_path()
        text = self.ca_bundle.strip() + "\n"
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
        return str(path)

    def rate_file(self) -> str:
        """Where every process of this node paces the remote's request rate (limits.FileRateLimiter)."""
        path = data_file("remote-rate", "remote_id", self.remote_id)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return str(path)

    def config(self, secret_key: str | None = None, write_ca: bool = True, **overrides) -> RemoteConfig:
        """The engine's settings for this remote (the secret decrypted unless given)."""
        values = dict(
            id=self.remote_id, endpoint=self.endpoint, bucket=self.bucket, region=self.region,
            access_key=self.access_key,
            secret_key=self.secret_key if secret_key is None else secret_key,
            provider=self.provider or "other", path_style=self.path_style,
            skip_if_none_match=self.skip_if_none_match,
            delete_via_delete_object=self.delete_via_delete_object,
            no_checksum_headers=self.no_checksum_headers,
            ca_bundle=self.write_ca_bundle() if write_ca else None,
            tls_fingerprint=self.tls_fingerprint or None,
            min_storage_days=self.min_storage_days,
            object_lock_days=self.object_lock_days, object_lock_mode=self.object_lock_mode,
            request_rate=self.request_rate, rate_file=self.rate_file() if self.request_rate else None,
        )
        values.update(overrides)
        return RemoteConfig(**values)

    def client(self, counters=None, guard=None, log=None, parallelism=None):
        """A boto3 S3 client (the one factory: remotes.engine.client.make_s3_client);
        `guard` (limits.CapGuard, see cap_guard) and `log` (what the throttle says) for runs,
        `parallelism` (the run's parallel transfers) sizes its connection pool."""
        return make_s3_client(self.config(), counters, guard=guard, log=log, parallelism=parallelism)

    @property
    def daily_caps(self) -> dict:
        return {"A": self.daily_cap_class_a, "B": self.daily_cap_class_b, "C": self.daily_cap_class_c}

    def has_caps(self) -> bool:
        return any(v is not None for v in self.daily_caps.values()) or self.monthly_budget is not None

    PRICE_FIELDS = ("price_storage_tb_month", "price_class_a", "price_class_b", "price_class_c", "price_egress_gb")

    def price_override(self) -> dict | None:
        """The user's prices for the cost engine (None: the provider's list prices)."""
        values = {name: getattr(self, name) for name in self.PRICE_FIELDS}
        if all(v is None for v in values.values()):
            return None
        return {"storage_per_tb_month": values["price_storage_tb_month"], "egress_per_gb": values["price_egress_gb"],
                "class_a": values["price_class_a"], "class_b": values["price_class_b"],
                "class_c": values["price_class_c"], "min_storage_days": self.min_storage_days,
                "date": self.price_date.isoformat() if self.price_date else None}

    def pricing(self) -> dict:
        """The price list every cost figure of this remote uses: the provider's, with the
        user's own prices applied (dashboard, page, plan, caps' budget)."""
        pricing = cost.load_pricing()
        override = self.price_override()
        if override is not None:
            pricing = cost.apply_override(pricing, self.provider or "other", override)
        return pricing

    def remove_ca_bundle(self) -> None:
        try:
            self.ca_bundle_path().unlink()
        except FileNotFoundError:
            pass

    def record_test(self, result, upid: str = "") -> None:
        """Store a ConnectionTestResult as this remote's last test."""
        errors = [m.text for m in result.messages if m.level == "error"]
        if result.ok and not errors:
            message = next((m.text for m in result.messages if m.level == "ok"), "OK")
        else:
            message = errors[0] if errors else "failed"
        Remote.objects.filter(pk=self.pk).update(
            last_test_ok=bool(result.ok and not errors), last_test_time=timezone.now(),
            last_test_message=message[:2000],
            last_test_latency_ms=result.latency_ms if result.ok else None,
            last_test_upid=upid)
        self.refresh_from_db(fields=["last_test_ok", "last_test_time", "last_test_message",
                                     "last_test_latency_ms", "last_test_upid"])


class RemoteUsage(models.Model):
    """Requests and bytes one run (or one day) used on a remote; feeds the chart and the cost view."""

    remote = models.ForeignKey(Remote, on_delete=models.CASCADE, related_name="usage")
    day = models.DateField()
    task_upid = models.CharField(max_length=512, null=True, blank=True)
    get = models.BigIntegerField(default=0)
    put = models.BigIntegerField(default=0)
    head = models.BigIntegerField(default=0)
    delete = models.BigIntegerField(default=0)
    list = models.BigIntegerField(default=0)
    bytes_up = models.BigIntegerField(default=0)
    bytes_down = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["day", "id"]
        indexes = [models.Index(fields=["remote", "day"])]

    @property
    def requests(self) -> int:
        return self.get + self.put + self.head + self.delete + self.list


def record_usage(remote, counters_snapshot: dict, task=None, day: datetime.date | None = None) -> RemoteUsage | None:
    """Add a RequestCounters snapshot to the remote's usage (the sync app calls this after each run).

    `remote` is a Remote or its ID, `task` a pbsweb Task or a UPID string.
    With a task, one row per task (calling again adds to it); without, one row per day.
    """
    if not isinstance(remote, Remote):
        remote = Remote.objects.get(remote_id=remote)
    snap = counters_snapshot or {}
    values = {kind: int(snap.get(kind.upper(), snap.get(kind, 0)) or 0) for kind in USAGE_KINDS}
    values["bytes_up"] = int(snap.get("bytes_up", 0) or 0)
    values["bytes_down"] = int(snap.get("bytes_down", 0) or 0)
    if not any(values.values()):
        return None
    upid = getattr(task, "upid", task) or None
    day = day or timezone.localdate()
    with transaction.atomic():
        row, created = RemoteUsage.objects.get_or_create(
            remote=remote, day=day, task_upid=upid, defaults=values)
        if not created:
            RemoteUsage.objects.filter(pk=row.pk).update(**{k: F(k) + v for k, v in values.items()})
            row.refresh_from_db()
    return row
