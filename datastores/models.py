"""Datastore configuration (the data lives on disk, written by datastores.engine).

- Datastore: name, path, comment, GC schedule (the datastore itself is the
  scheduled GC job: `schedule` is its garbage-collection schedule), verify-new,
  and its encryption key (file DATA_DIR/keys/<name>.json, passphrase encrypted
  at rest with pbsweb.secretbox).
- PruneJob, VerifyJob: scheduled jobs per datastore, as PBS's prune.cfg and
  verification.cfg.
"""
import re
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import models

from datastores.engine.crypto import load_keyfile
from datastores.engine.datastore import Datastore as EngineStore
from datastores.engine.errors import DatastoreError
from pbsweb.calendarevent import ScheduleError, parse_schedule
from pbsweb.models import ScheduledJob, Task
from pbsweb.paths import data_file
from pbsweb.secretbox import decrypt_secret
from pbsweb.worker import run

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{2,31}$")
JOB_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{1,31}$")
KEEP_FIELDS = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")


def validate_store_name(value: str) -> None:
    if not NAME_RE.match(value or ""):
        raise ValidationError("Datastore name must be 3-32 characters: letters, digits, '_' and '-', "
                              "not starting with '-'.")


def validate_job_id(value: str) -> None:
    if not JOB_ID_RE.match(value or ""):
        raise ValidationError("Job ID must be 2-32 characters: letters, digits, '_', '.' and '-'.")


def validate_schedule(value: str) -> None:
    if not value:
        return
    try:
        parse_schedule(value)
    except ScheduleError as e:
        raise ValidationError(str(e)) from None


class Datastore(ScheduledJob):
    """A datastore's configuration; `schedule` is its garbage-collection schedule."""

    name = models.CharField(max_length=32, unique=True, validators=[validate_store_name])
    path = models.CharField(max_length=4096, unique=True)
    schedule = models.CharField("GC Schedule", max_length=128, blank=True, default="daily")
    verify_new = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    # Encryption key: the key file lives in DATA_DIR/keys/<name>.json.
    key_fingerprint = models.CharField(max_length=64, blank=True)
    key_kdf = models.CharField(max_length=16, blank=True)
    key_passphrase = models.TextField(blank=True)  # secretbox-encrypted, never shown
    # The node (PBSWEB_NODE) whose disk holds the store: the one that created it. Clients back up
    # to that node's web server (README "Deployment: several worker nodes"). Blank: unknown.
    node = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def gc_schedule(self) -> str:
        return self.schedule

    def engine(self):
        return EngineStore(self.path)

    @property
    def key_path(self) -> Path:
        return data_file("keys", "name", self.name, ".json")

    def has_key(self) -> bool:
        return bool(self.key_fingerprint) and self.key_path.exists()

    def crypt_config(self):
        """The datastore's encryption key (None when it has none)."""
        if not self.has_key():
            return None

        try:
            passphrase = decrypt_secret(self.key_passphrase) if self.key_passphrase else None
        except ImproperlyConfigured as e:
            raise DatastoreError(f"the passphrase of the key of datastore '{self.name}' cannot be read: {e}") from None
        return load_keyfile(self.key_path, passphrase)

    def start(self, user: str, **run_options) -> Task:
        return run("datastores.tasks.garbage_collection", "garbage_collection", self.name, user,
                   {"store": self.name}, store=self.name, **run_options)


class PruneJob(ScheduledJob):
    job_id = models.CharField("Job ID", max_length=32, unique=True, validators=[validate_job_id])
    store = models.ForeignKey(Datastore, on_delete=models.CASCADE, related_name="prune_jobs")
    ns = models.CharField("Namespace", max_length=256, blank=True)
    max_depth = models.PositiveSmallIntegerField(null=True, blank=True)
    keep_last = models.PositiveIntegerField(null=True, blank=True)
    keep_hourly = models.PositiveIntegerField(null=True, blank=True)
    keep_daily = models.PositiveIntegerField(null=True, blank=True)
    keep_weekly = models.PositiveIntegerField(null=True, blank=True)
    keep_monthly = models.PositiveIntegerField(null=True, blank=True)
    keep_yearly = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["job_id"]

    def __str__(self) -> str:
        return self.job_id

    def keep_dict(self) -> dict:
        return {f: getattr(self, f) for f in KEEP_FIELDS if getattr(self, f) is not None}

    def keep_text(self) -> str:
        return ", ".join(f"{k.replace('_', '-')}: {v}" for k, v in self.keep_dict().items()) or "keep all"

    def start(self, user: str, **run_options) -> Task:
        return run("datastores.tasks.prunejob", "prunejob", f"{self.store.name}:{self.job_id}", user,
                   {"job": self.job_id}, store=self.store.name, job=self.job_id, **run_options)


class VerifyJob(ScheduledJob):
    job_id = models.CharField("Job ID", max_length=32, unique=True, validators=[validate_job_id])
    store = models.ForeignKey(Datastore, on_delete=models.CASCADE, related_name="verify_jobs")
    ns = models.CharField("Namespace", max_length=256, blank=True)
    ignore_verified = models.BooleanField("Skip verified", default=True)
    outdated_after = models.PositiveIntegerField("Re-verify after (days)", null=True, blank=True)

    class Meta:
        ordering = ["job_id"]

    def __str__(self) -> str:
        return self.job_id

    def start(self, user: str, **run_options) -> Task:
        return run("datastores.tasks.verificationjob", "verificationjob", f"{self.store.name}:{self.job_id}",
                   user, {"job": self.job_id}, store=self.store.name, job=self.job_id, **run_options)


class DatastoreUsage(models.Model):
    """A sample of a datastore's filesystem usage (the dashboard's history and Estimated Full)."""

    store = models.ForeignKey(Datastore, on_delete=models.CASCADE, related_name="usage_samples")
    time = models.DateTimeField(db_index=True)
    used_bytes = models.BigIntegerField()
    total_bytes = models.BigIntegerField()
    avail_bytes = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["time"]
        indexes = [models.Index(fields=["store", "time"])]

    def __str__(self) -> str:
        return f"{self.store_id} {self.time:%Y-%m-%d %H:%M} {self.used_bytes}/{self.total_bytes}"


class StorageNode(models.Model):
    """A node's web server as backup clients reach it: its address and TLS certificate fingerprint.
    Each node records itself when its web server starts and when it creates a datastore."""

    name = models.CharField(max_length=64, unique=True)
    address = models.CharField(max_length=255)        # HOST[:PORT] (PBSWEB_NODE_ADDRESS)
    fingerprint = models.CharField(max_length=95, blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.address})"

    def stores(self):
        return Datastore.objects.filter(node=self.name)
