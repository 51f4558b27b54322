"""Notifications when a task finishes: an email (Django's mail settings) or a webhook POST.

`notify_task_finished(task)` is called by pbsweb.worker.execute() after the
task's final state is stored. It never raises: a failing notification is
logged and kept on the target (`last_error`), and the task stays as it ended.
"""
import json
import logging
import os
import urllib.error
import urllib.request
from collections import deque

from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from pbsweb.models import NotificationTarget, Task
from pbsweb.upid import new_upid

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT = 5.0   # seconds
LOG_LINES = 20


def base_url(task: Task | None = None) -> str:
    url = os.environ.get("PBSWEB_BASE_URL") or getattr(settings, "PBSWEB_BASE_URL", "")
    if url:
        return url.rstrip("/")
    node = (task.node if task is not None and task.node else settings.NODE_NAME) or "localhost"
    return f"https://{node}:8007"


def log_tail(task: Task, lines: int = LOG_LINES) -> list[str]:
    try:
        with open(task.log_path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return list(deque(text.splitlines(), maxlen=lines))


def payload(task: Task) -> dict:
    status = "OK" if task.state == Task.OK else task.status or task.state
    return {
        "upid": task.upid, "type": task.worker_type, "id": task.worker_id, "user": task.user,
        "status": status, "state": task.state, "node": task.node,
        "starttime": task.starttime.isoformat() if task.starttime else None,
        "endtime": task.endtime.isoformat() if task.endtime else None,
        "log": log_tail(task) or (["This is a test notification from pbsweb."]
                                   if task.worker_type == "notificationtest" else []),
        "url": base_url(task) + task.url,
    }


def subject(task: Task) -> str:
    what = task.description
    if task.state == Task.OK:
        return f"pbsweb {task.node}: {what} OK"
    if task.state == Task.WARNING:
        return f"pbsweb {task.node}: {what} finished with {task.status.lower()}"
    return f"pbsweb {task.node}: {what} failed"


def send(target: NotificationTarget, task: Task) -> None:
    """Deliver one notification; raises on failure (callers decide what to do)."""
    data = payload(task)
    if target.kind == NotificationTarget.WEBHOOK:
        body = json.dumps(data).encode()
        request = urllib.request.Request(target.address, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "pbsweb-notify/1"})
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:
            if response.status >= 300:
                raise OSError(f"webhook answered HTTP {response.status}")
        return
    text = (f"{task.description}\nStatus: {data['status']}\nUPID: {task.upid}\n"
            f"Started: {data['starttime']}\nEnded: {data['endtime']}\n\n"
            "Last log lines:\n" + "\n".join(data["log"]) + f"\n\nTask log: {data['url']}\n")
    sender = getattr(settings, "DEFAULT_FROM_EMAIL", None) or f"pbsweb@{task.node or 'localhost'}"
    send_mail(subject(task), text, sender, [a.strip() for a in target.address.split(",") if a.strip()],
              fail_silently=False)


def error_text(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"webhook answered HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot reach the webhook: {exc.reason}"
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return f"no answer within {WEBHOOK_TIMEOUT:g} s (timed out)"
    return f"{type(exc).__name__}: {exc}"


def deliver(target: NotificationTarget, task: Task) -> str:
    """Send and record the outcome on the target; '' on success, else the error text."""
    try:
        send(target, task)
    except Exception as exc:  # noqa: BLE001 - a notification failure is reported, never raised
        error = error_text(exc)[:2000]
        log.warning("notification %s for task %s failed: %s", target.name, task.upid, error)
        NotificationTarget.objects.filter(pk=target.pk).update(last_error=error)
        return error
    NotificationTarget.objects.filter(pk=target.pk).update(last_sent=timezone.now(), last_error="")
    return ""


def notify_task_finished(task) -> int:
    """Notify every matching enabled target about a finished task; returns how many were sent."""
    try:
        if not isinstance(task, Task):
            task = Task.objects.get(pk=task)
        else:
            task.refresh_from_db()
        if task.running:
            return 0
        sent = 0
        for target in NotificationTarget.objects.filter(enabled=True):
            if target.matches(task) and not deliver(target, task):
                sent += 1
        return sent
    except Exception:  # noqa: BLE001
        log.exception("notifications for task %s failed", getattr(task, "upid", task))
        return 0


# -- the Configuration → Notifications dialog ----------------------------------------

import re  # noqa: E402

from django import forms  # noqa: E402
from django.core.validators import URLValidator, validate_email  # noqa: E402

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{1,31}$")
TYPE_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


class NotificationForm(forms.ModelForm):
    class Meta:
        model = NotificationTarget
        fields = ["name", "kind", "address", "when", "worker_types", "worker_id", "enabled", "comment"]
        help_texts = {
            "address": "Email addresses (comma-separated) or the webhook's http(s) URL.",
            "worker_types": "Comma-separated task types, e.g. syncjob, prune; blank for all.",
            "worker_id": "Only tasks whose ID contains this text (e.g. a sync job ID); blank for all.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.editing = bool(self.instance and self.instance.pk)
        if self.editing:
            self.fields["name"].disabled = True
            if self.instance.kind == NotificationTarget.WEBHOOK:
                # the URL may hold a token: never sent back; blank keeps it
                self.initial["address"] = ""
                self.fields["address"].required = False
                self.fields["address"].help_text = "Leave blank to keep the current URL (not shown: it may hold a token)."

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not NAME_RE.match(name):
            raise forms.ValidationError("Name must be 2-32 characters: letters, digits, '_' and '-'.")
        return name

    def clean_worker_types(self):
        types = [t.strip() for t in self.cleaned_data.get("worker_types", "").split(",") if t.strip()]
        for t in types:
            if not TYPE_RE.match(t):
                raise forms.ValidationError(f"'{t}' is not a task type (e.g. syncjob, prune, "
                                            f"garbage_collection, verify, backup).")
        return ", ".join(types)

    def clean(self):
        data = super().clean()
        kind, address = data.get("kind"), (data.get("address") or "").strip()
        if self.editing and not address and kind == self.instance.kind == NotificationTarget.WEBHOOK:
            data["address"] = self.instance.address
            return data
        if kind and not address:
            self.add_error("address", "This field is required.")
        if not kind or not address:
            return data
        if kind == NotificationTarget.WEBHOOK:
            try:
                URLValidator(schemes=["http", "https"])(address)
            except forms.ValidationError:
                self.add_error("address", "Enter the webhook's URL: http:// or https://host[:port]/path.")
        else:
            addresses = [a.strip() for a in address.split(",") if a.strip()]
            try:
                for a in addresses:
                    validate_email(a)
            except forms.ValidationError:
                self.add_error("address", f"'{a}' is not an email address.")
            if not addresses:
                self.add_error("address", "Enter at least one email address.")
            address = ", ".join(addresses)
        data["address"] = address
        return data


def test_task() -> Task:
    """An unsaved task that stands for a finished one in a test notification."""
    now = timezone.now()
    upid = new_upid(settings.NODE_NAME, "notificationtest", "test", "root@pam", int(now.timestamp()))
    return Task(upid=str(upid), node=upid.node, worker_type="notificationtest", worker_id="test",
                user="root@pam", starttime=now, endtime=now, state=Task.OK, status="OK")


def send_test(target: NotificationTarget) -> str:
    """Send a test notification now; '' when it went out, else the error."""
    return deliver(target, test_task())
