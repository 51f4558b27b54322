"""Sync jobs (PBS sync.cfg) and traffic-control rules.

A SyncJob replicates one local datastore (or a namespace of it) to a prefix
of an S3 remote's bucket (push), or a bucket prefix into the datastore (pull).
The job stores the stats of its last run. Traffic-control rules limit the
rate of sync jobs during time frames (unlike PBS, where they govern the API
server's traffic): a run goes at min(job rate, rules active now).
"""
import re

from django.db import models

from datastores.engine.prune import KeepOptions
from pbsweb.models import ScheduledJob, Task
from pbsweb.worker import run

JOB_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{2,31}$")
RULE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{2,31}$")
DIRECTIONS = [("push", "Push"), ("pull", "Pull")]
DEFAULT_WORKERS = 8
KEEP_FIELDS = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")


class SyncJob(ScheduledJob):
    job_id = models.CharField("Job ID", max_length=32, unique=True)
    store = models.ForeignKey("datastores.Datastore", on_delete=models.PROTECT, related_name="sync_jobs")
    remote = models.ForeignKey("remotes.Remote", on_delete=models.PROTECT, related_name="sync_jobs")
    remote_store = models.CharField("Remote Store", max_length=255)
    ns = models.CharField("Local Namespace", max_length=255, blank=True)
    max_depth = models.PositiveSmallIntegerField("Max. Depth", null=True, blank=True)
    group_filter = models.JSONField(default=list, blank=True)
    remove_vanished = models.BooleanField("Remove Vanished", default=False)
    transfer_last = models.PositiveIntegerField("Transfer Last", null=True, blank=True)
    rate_out = models.BigIntegerField("Rate Limit", null=True, blank=True)   # bytes/s; None = unlimited
    burst_out = models.BigIntegerField("Burst", null=True, blank=True)
    workers = models.PositiveSmallIntegerField("Parallel uploads", default=DEFAULT_WORKERS)
    direction = models.CharField("Direction", max_length=4, choices=DIRECTIONS, default="push")
    force = models.BooleanField("Take over prefix", default=False)
    # Own remote retention (push; instead of remove-vanished): PBS prune options for the bucket.
    keep_last = models.PositiveIntegerField("Keep Last", null=True, blank=True)
    keep_hourly = models.PositiveIntegerField("Keep Hourly", null=True, blank=True)
    keep_daily = models.PositiveIntegerField("Keep Daily", null=True, blank=True)
    keep_weekly = models.PositiveIntegerField("Keep Weekly", null=True, blank=True)
    keep_monthly = models.PositiveIntegerField("Keep Monthly", null=True, blank=True)
    keep_yearly = models.PositiveIntegerField("Keep Yearly", null=True, blank=True)
    # stats of the last finished run
    last_bytes = models.BigIntegerField(default=0)
    last_objects = models.IntegerField(default=0)
    last_chunks = models.IntegerField(default=0)
    last_deleted = models.IntegerField(default=0)
    last_deferred = models.IntegerField(default=0)
    last_snapshots = models.IntegerField(default=0)
    last_summary = models.TextField(blank=True)
    last_run_end = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job_id"]

    def __str__(self) -> str:
        return self.job_id

    @property
    def remote_keep(self) -> KeepOptions | None:
        """The bucket's own retention, or None (mirror local retention with remove-vanished)."""
        keep = KeepOptions(**{name: getattr(self, name) for name in KEEP_FIELDS})
        return keep if keep.any() else None

    @property
    def worker_id(self) -> str:
        """PBS: `<remote>:<remote-store>:<store>:<ns>:<job>`."""
        return f"{self.remote.remote_id}:{self.remote_store}:{self.store.name}:{self.ns}:{self.job_id}"

    @property
    def acl_path(self) -> str:
        return f"/datastore/{self.store.name}"

    def start(self, user: str, reconcile: bool = False, as_of: str | None = None, **run_options) -> Task:
        args = {"job_id": self.job_id}
        if reconcile:
            args["reconcile"] = True
        if as_of:  # pull only: the bucket as it was then (an ISO time, checked by the caller)
            args["as_of"] = as_of
        return run("syncjobs.tasks.run_sync_job", "syncjob", self.worker_id, user, args,
                   store=self.store.name, job=self.job_id, **run_options)


class TrafficControlRule(models.Model):
    name = models.CharField(max_length=32, unique=True)
    rate_out = models.BigIntegerField("Rate Out", null=True, blank=True)     # bytes/s; None = unlimited
    burst_out = models.BigIntegerField("Burst Out", null=True, blank=True)
    timeframes = models.JSONField(default=list, blank=True)   # ["mon..fri 08:00-18:00", ...]; [] = always
    remotes = models.ManyToManyField("remotes.Remote", blank=True, related_name="traffic_rules")  # none = all
    comment = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def remote_names(self) -> list[str]:
        return [r.remote_id for r in self.remotes.all()]

    def applies_to(self, remote) -> bool:
        ids = [r.pk for r in self.remotes.all()]
        return not ids or remote.pk in ids


# -- restore drills -------------------------------------------------------------------------

DRILL_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{2,31}$")
DEFAULT_DRILL_SAMPLE = 2


class DrillJob(ScheduledJob):
    """A scheduled restore drill of one remote (all store prefixes, or one).

    A drill proves the off-site copy restores: it downloads and verifies
    every chunk of the newest snapshot of each group plus a seeded random
    sample of older ones, and restores one archive to a scratch directory.
    """

    job_id = models.CharField("Drill ID", max_length=32, unique=True)
    remote = models.ForeignKey("remotes.Remote", on_delete=models.PROTECT, related_name="drill_jobs")
    remote_store = models.CharField("Remote Store", max_length=255, blank=True)   # "" = every store prefix
    sample_size = models.PositiveIntegerField("Older snapshots sampled", default=DEFAULT_DRILL_SAMPLE)
    schedule = models.CharField("Schedule", max_length=128, blank=True, default="weekly")
    # the last finished run
    last_time = models.DateTimeField(null=True, blank=True)
    last_snapshots = models.IntegerField(default=0)
    last_ok = models.BooleanField(null=True, blank=True)
    last_message = models.TextField(blank=True)
    last_bytes = models.BigIntegerField(default=0)
    # on a budget (syncjobs/engine/drill_budget.py): each run verifies the next slice of the prefix
    budget_bytes = models.BigIntegerField("Budget (bytes per run)", null=True, blank=True)
    max_gets = models.PositiveIntegerField("Budget (GETs per run)", null=True, blank=True)
    cursor = models.CharField(max_length=64, blank=True)          # the next run starts after this digest
    budget_credit = models.BigIntegerField(default=0)             # unused allowance the next run inherits
    runs_per_pass = models.PositiveIntegerField(null=True, blank=True)   # K
    last_full_coverage = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job_id"]
        verbose_name = "restore drill"

    @property
    def on_budget(self) -> bool:
        return bool(self.budget_bytes or self.max_gets)

    def coverage_text(self) -> str:
        """'bucket fully verified every K runs; last full coverage on DATE' (budget drills)."""
        if not self.on_budget or not self.runs_per_pass:
            return ""
        last = f"{self.last_full_coverage:%Y-%m-%d}" if self.last_full_coverage else "not yet"
        runs = "run" if self.runs_per_pass == 1 else f"{self.runs_per_pass} runs"
        return f"bucket fully verified every {runs}; last full coverage on {last}"

    def __str__(self) -> str:
        return self.job_id

    @property
    def worker_id(self) -> str:
        return drill_worker_id(self.remote.remote_id, self.remote_store)

    @property
    def acl_path(self) -> str:
        return f"/remote/{self.remote.remote_id}"

    def start(self, user: str, sample: int | None = None, seed: int | None = None, **run_options) -> Task:
        args = {"remote": self.remote.remote_id, "remote_store": self.remote_store,
                "sample": self.sample_size if sample is None else sample, "job_id": self.job_id}
        if seed is not None:
            args["seed"] = seed
        return run("syncjobs.tasks.run_drill", "drill", self.worker_id, user, args, job=self.job_id, **run_options)


def drill_worker_id(remote_id: str, remote_store: str) -> str:
    return f"{remote_id}:{remote_store}" if remote_store else remote_id


class DrillRun(models.Model):
    """One finished restore drill (scheduled, Run now, or `drill run` on the CLI)."""

    remote = models.ForeignKey("remotes.Remote", on_delete=models.CASCADE, related_name="drill_runs")
    job = models.ForeignKey(DrillJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    remote_store = models.CharField(max_length=255, blank=True)
    time = models.DateTimeField()
    snapshots = models.IntegerField(default=0)
    chunks = models.IntegerField(default=0)
    ok = models.BooleanField(default=False)
    message = models.TextField(blank=True)
    bytes_downloaded = models.BigIntegerField(default=0)
    task_upid = models.CharField(max_length=512, blank=True)

    class Meta:
        ordering = ["-time", "-id"]
        indexes = [models.Index(fields=["remote", "-time"])]


JOB_PRIV = "Datastore.Modify"
