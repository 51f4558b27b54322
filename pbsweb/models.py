from datetime import timedelta
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.db import models
from django.utils import timezone

from pbsweb import tasklog
from pbsweb.calendarevent import parse_schedule
from pbsweb.registry import registry
from pbsweb.upid import parse_upid


def task_url(upid: str) -> str:
    """The task viewer's URL. UPIDs hold backslash escapes (`\\x3a`), which browsers
    would turn into '/', so they are percent-encoded."""
    return f"/tasks/{quote(upid, safe=':@')}/"


class Task(models.Model):
    """One run of a long operation (docs/DESIGN.md §4). The log stays a file."""

    QUEUED, RUNNING, OK, WARNING, ERROR = "queued", "running", "ok", "warning", "error"
    STATES = [(s, s) for s in (QUEUED, RUNNING, OK, WARNING, ERROR)]

    upid = models.CharField(max_length=512, unique=True)
    node = models.CharField(max_length=64)
    worker_type = models.CharField(max_length=64)
    worker_id = models.CharField(max_length=255, blank=True)
    user = models.CharField(max_length=128)
    starttime = models.DateTimeField(default=timezone.now)
    endtime = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=STATES, default=QUEUED)
    # PBS's status text: "OK", "WARNINGS: 3", or the error message.
    status = models.TextField(blank=True)
    progress = models.FloatField(null=True, blank=True)
    progress_text = models.CharField(max_length=255, blank=True)
    abort_requested = models.BooleanField(default=False)
    heartbeat = models.DateTimeField(null=True, blank=True)
    # What runs: a registered function name and its JSON arguments.
    function = models.CharField(max_length=255, blank=True)
    arguments = models.JSONField(default=dict, blank=True)
    queue = models.CharField(max_length=128, blank=True)
    # Which datastore and job the task belongs to (blank: none), so nothing parses worker ids.
    store = models.CharField(max_length=32, blank=True)
    job = models.CharField(max_length=64, blank=True)
    # What the task function returned: its figures (bytes sent, snapshots failed, ...).
    result = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-starttime", "-id"]
        indexes = [
            models.Index(fields=["-starttime", "-id"]),
            models.Index(fields=["state", "-starttime"]),
            models.Index(fields=["worker_type", "-starttime"]),
            # a job's runs (last successful sync on the dashboard, the job's Show log)
            models.Index(fields=["worker_type", "worker_id", "-starttime"]),
            models.Index(fields=["store", "-starttime"]),
        ]

    def __str__(self) -> str:
        return self.upid

    @property
    def log_path(self):
        return tasklog.log_path(settings.TASK_LOG_DIR, self.upid, parse_upid(self.upid).pstart)

    @property
    def url(self) -> str:
        return task_url(self.upid)

    @property
    def running(self) -> bool:
        return self.state in (self.QUEUED, self.RUNNING)

    @property
    def duration(self) -> timedelta | None:
        end = self.endtime or (timezone.now() if self.running else None)
        return end - self.starttime if end else None

    @property
    def description(self) -> str:
        return registry.describe(self.worker_type, self.worker_id)


class AclEntry(models.Model):
    """A role granted to a user or to an API token on a path, as PBS's acl.cfg (`/`, `/datastore/x`,
    `/remote/y`). A token's entries limit it: it holds what they grant and its user holds too."""

    path = models.CharField(max_length=255, default="/")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="acl",
                             null=True, blank=True)
    token = models.ForeignKey("ApiToken", on_delete=models.CASCADE, related_name="acl", null=True, blank=True)
    role = models.CharField(max_length=64)
    propagate = models.BooleanField(default=True)

    class Meta:
        unique_together = [("path", "user", "role"), ("path", "token", "role")]
        constraints = [models.CheckConstraint(
            condition=models.Q(user__isnull=False, token__isnull=True) | models.Q(user__isnull=True, token__isnull=False),
            name="acl_user_or_token")]
        ordering = ["path", "user__username", "token__name"]

    @property
    def auth_id(self) -> str:
        """`user@realm` or `user@realm!token`, as PBS's Permissions grid shows it."""
        return self.token.tokenid if self.token_id else self.user.username

    def __str__(self) -> str:
        return f"{self.path} {self.auth_id} {self.role}"


class ScheduledJob(models.Model):
    """Base of every job that runs on a calendar-event schedule (sync, prune, verify, GC).

    The scheduler tick starts a job when `next_run` has passed; subclasses
    implement `start(user)` returning the Task they queued.
    """

    schedule = models.CharField(max_length=128, blank=True)
    enabled = models.BooleanField(default=True)
    next_run = models.DateTimeField(null=True, blank=True)
    last_task = models.ForeignKey(Task, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    comment = models.CharField(max_length=255, blank=True)

    class Meta:
        abstract = True

    def compute_next_run(self, after=None):
        if not self.schedule or not self.enabled:
            return None
        after = (after or timezone.now()).astimezone(timezone.get_current_timezone())
        return parse_schedule(self.schedule).next_after(after)

    def start(self, user: str) -> Task:  # pragma: no cover - abstract
        """Queue the job's task (subclasses)."""
        raise NotImplementedError

    def launch(self, user: str, **options) -> Task:
        """Start the job now (schedule, Run now, API, CLI) and show the run as its last task: the
        one place `last_task` is written. `options` go to `start()` (and on to worker.run())."""
        task = self.start(user, **options)
        type(self).objects.filter(pk=self.pk).update(last_task=task)
        self.last_task = task
        return task


class ApiToken(models.Model):
    """`user@realm!name` tokens for scripts; the secret is stored hashed, shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=64)
    secret_hash = models.CharField(max_length=128)
    enabled = models.BooleanField(default=True)
    expire = models.DateTimeField(null=True, blank=True)
    comment = models.CharField(max_length=255, blank=True)

    class Meta:
        unique_together = [("user", "name")]

    @property
    def tokenid(self) -> str:
        return f"{self.user.username}!{self.name}"


class NotificationTarget(models.Model):
    """Where to tell someone that a task finished: an email address or a webhook URL."""

    EMAIL, WEBHOOK = "email", "webhook"
    KINDS = [(EMAIL, "Email"), (WEBHOOK, "Webhook")]
    FAILURE, ALWAYS = "failure", "always"
    WHEN = [(FAILURE, "On failure (errors and warnings)"), (ALWAYS, "Always")]

    name = models.CharField(max_length=32, unique=True)
    kind = models.CharField("Type", max_length=16, choices=KINDS, default=EMAIL)
    address = models.CharField("Address / URL", max_length=512)
    when = models.CharField("Notify", max_length=16, choices=WHEN, default=FAILURE)
    # comma-separated worker types (blank = all) and a worker-id filter (substring, blank = all)
    worker_types = models.CharField("Task types", max_length=255, blank=True)
    worker_id = models.CharField("Job / ID filter", max_length=255, blank=True)
    enabled = models.BooleanField(default=True)
    comment = models.CharField(max_length=255, blank=True)
    last_sent = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def display_address(self) -> str:
        """What the grid shows: email addresses, or only a webhook's scheme and host (its path and
        query often hold a token, e.g. Slack's or Gotify's, so they are never shown back)."""
        if self.kind != self.WEBHOOK:
            return self.address
        parts = urlsplit(self.address)
        host = parts.netloc.rpartition("@")[2]
        hidden = parts.path not in ("", "/") or parts.query
        return f"{parts.scheme}://{host}/" + ("…" if hidden else "")

    def type_list(self) -> list[str]:
        return [t.strip() for t in self.worker_types.split(",") if t.strip()]

    def matches(self, task: Task) -> bool:
        if not self.enabled:
            return False
        if self.when == self.FAILURE and task.state not in (Task.ERROR, Task.WARNING):
            return False
        types = self.type_list()
        if types and task.worker_type not in types:
            return False
        if self.worker_id and self.worker_id not in (task.worker_id or ""):
            return False
        return True
