"""Notifications: a webhook receives a failed task as JSON (a real HTTP server on loopback),
email goes through Django's mail settings (locmem here), a failing notification never
fails the task, and the Configuration → Notifications page (grid, Add dialog, Test)."""
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail

from pbsweb import notify
from pbsweb.models import NotificationTarget, Task
from pbsweb import worker
from pbsweb.worker import task_function

pytestmark = pytest.mark.django_db


@task_function
def notify_test_fails(reporter, message="disk on fire"):
    for i in range(30):
        reporter.log(f"step {i}")
    raise ValueError(message)


@task_function
def notify_test_ok(reporter):
    reporter.log("all good")


class Hook:
    """A webhook receiver on loopback that records each POST (status: what it answers)."""

    def __init__(self, status=200):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/pbs"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def run(function="tests.test_notifications.notify_test_fails", worker_type="syncjob", worker_id="r1:s:s::job1"):
    return worker.run(function, worker_type, worker_id, "root@pam", {}, inline=True, echo=None)


def test_webhook_receives_failed_task(hook, monkeypatch):
    monkeypatch.setenv("PBSWEB_BASE_URL", "https://backup.example.com:8007/")
    NotificationTarget.objects.create(name="hook", kind="webhook", address=hook.url, when="failure")
    task = run()
    assert task.state == Task.ERROR
    assert len(hook.received) == 1
    got = hook.received[0]
    assert got["path"] == "/hook/pbs" and got["headers"]["Content-Type"] == "application/json"
    doc = json.loads(got["body"])
    assert doc["upid"] == task.upid and doc["type"] == "syncjob" and doc["id"] == "r1:s:s::job1"
    assert doc["status"] == "disk on fire" and doc["state"] == "error" and doc["node"] == task.node
    assert len(doc["log"]) == 20
    assert doc["log"][-1].endswith("TASK ERROR: disk on fire") and doc["log"][-2].endswith("step 29")
    assert doc["url"] == "https://backup.example.com:8007" + task.url
    target = NotificationTarget.objects.get(name="hook")
    assert target.last_sent is not None and target.last_error == ""


def test_failure_target_ignores_ok_tasks_and_filters_match(hook):
    NotificationTarget.objects.create(name="fail", kind="webhook", address=hook.url, when="failure")
    run("tests.test_notifications.notify_test_ok")
    assert hook.received == []
    NotificationTarget.objects.create(name="always", kind="webhook", address=hook.url, when="always",
                                      worker_types="syncjob", worker_id="job1")
    run("tests.test_notifications.notify_test_ok")
    assert len(hook.received) == 1 and json.loads(hook.received[0]["body"])["status"] == "OK"
    run("tests.test_notifications.notify_test_ok", worker_type="prune", worker_id="store1")
    run("tests.test_notifications.notify_test_ok", worker_id="r1:s:s::other")
    assert len(hook.received) == 1
    NotificationTarget.objects.filter(name="always").update(enabled=False)
    run("tests.test_notifications.notify_test_ok")
    assert len(hook.received) == 1


def test_default_link_uses_node_and_port_8007(monkeypatch, settings):
    monkeypatch.delenv("PBSWEB_BASE_URL", raising=False)
    settings.PBSWEB_BASE_URL = ""
    task = run()
    assert notify.payload(task)["url"] == f"https://{task.node}:8007{task.url}"


def test_email_via_django_mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    NotificationTarget.objects.create(name="ops", kind="email", address="ops@example.com, oncall@example.com")
    task = run()
    assert len(mail.outbox) == 1
    msg = mail.outbox[0]
    assert msg.to == ["ops@example.com", "oncall@example.com"]
    assert "Sync Job" in msg.subject and "failed" in msg.subject
    assert "TASK ERROR: disk on fire" in msg.body and task.upid in msg.body and task.url in msg.body


def test_failing_notifications_never_fail_the_task(monkeypatch, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    NotificationTarget.objects.create(name="dead", kind="webhook", address=f"http://127.0.0.1:{dead}/x",
                                      when="always")
    broken = Hook(status=500)
    try:
        NotificationTarget.objects.create(name="five-hundred", kind="webhook", address=broken.url, when="always")
        NotificationTarget.objects.create(name="mail", kind="email", address="ops@example.com", when="always")

        def explode(*args, **kwargs):
            raise RuntimeError("smtp server exploded")
        monkeypatch.setattr(notify, "send_mail", explode)
        task = run("tests.test_notifications.notify_test_ok")
    finally:
        broken.close()
    assert task.state == Task.OK and task.status == "OK"
    errors = dict(NotificationTarget.objects.values_list("name", "last_error"))
    assert errors["dead"] == "cannot reach the webhook: [Errno 111] Connection refused"
    assert errors["five-hundred"] == "webhook answered HTTP 500 Internal Server Error"
    assert "smtp server exploded" in errors["mail"]
    # even an exception escaping notify_task_finished leaves the task as it ended
    monkeypatch.setattr(notify, "notify_task_finished", lambda t: 1 / 0)
    task = run("tests.test_notifications.notify_test_ok")
    assert task.state == Task.OK


def test_webhook_timeout_is_short(monkeypatch):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)  # accepts, never answers
    try:
        monkeypatch.setattr(notify, "WEBHOOK_TIMEOUT", 0.5)
        target = NotificationTarget.objects.create(
            name="slow", kind="webhook", address=f"http://127.0.0.1:{silent.getsockname()[1]}/", when="always")
        started = time.monotonic()
        error = notify.send_test(target)
        assert time.monotonic() - started < 3
        assert "timed out" in error
    finally:
        silent.close()


# -- the page --------------------------------------------------------------------

def test_notifications_page_add_test_remove(admin_client, hook):
    page = admin_client.get("/notifications/").content.decode()
    assert "No notification targets" in page and 'id="notification-dialog"' in page
    assert 'href="/notifications/"' in page  # Configuration → Notifications in the navigation

    bad = admin_client.post("/notifications/add/", {"name": "x", "kind": "webhook", "address": "ftp://nope",
                                                   "when": "failure", "worker_types": "sync job"})
    assert bad.status_code == 400
    html = bad.content.decode()
    assert 'data-field="name"' in html and 'data-field="address"' in html and 'data-field="worker_types"' in html
    assert "Enter the webhook&#x27;s URL" in html and "dialog" in html
    bad_mail = admin_client.post("/notifications/add/", {"name": "ops", "kind": "email", "address": "not-an-address",
                                                        "when": "failure"})
    assert bad_mail.status_code == 400 and "is not an email address" in bad_mail.content.decode()
    assert not NotificationTarget.objects.exists()

    ok = admin_client.post("/notifications/add/", {"name": "hook", "kind": "webhook", "address": hook.url,
                                                  "when": "always", "worker_types": "syncjob, prune",
                                                  "enabled": "on", "comment": "chat"})
    assert ok.status_code == 302
    target = NotificationTarget.objects.get(name="hook")
    assert target.type_list() == ["syncjob", "prune"] and target.enabled
    page = admin_client.get("/notifications/").content.decode()
    assert 'data-id="hook"' in page and hook.url not in page and hook.url.rsplit("/", 2)[0] + "/…" in page

    result = admin_client.post("/notifications/hook/test/", HTTP_HX_REQUEST="true")
    assert result.status_code == 200 and "Test notification sent to 'hook'" in result.content.decode()
    doc = json.loads(hook.received[0]["body"])
    assert doc["type"] == "notificationtest" and doc["log"] == ["This is a test notification from pbsweb."]

    assert admin_client.post("/notifications/hook/remove/").status_code == 302
    assert not NotificationTarget.objects.exists()


def test_test_button_reports_failure(admin_client):
    NotificationTarget.objects.create(name="dead", kind="webhook", address="http://127.0.0.1:9/", when="always")
    html = admin_client.post("/notifications/dead/test/", HTTP_HX_REQUEST="true").content.decode()
    assert "Test notification to 'dead' failed: cannot reach the webhook: [Errno 111] Connection refused" in html


def test_audit_reads_but_cannot_change(audit_client):
    NotificationTarget.objects.create(name="ops", kind="email", address="ops@example.com")
    assert audit_client.get("/notifications/").status_code == 200
    assert audit_client.post("/notifications/add/", {"name": "x2", "kind": "email", "address": "a@b.c",
                                                    "when": "always"}).status_code == 403
    assert audit_client.post("/notifications/ops/test/").status_code == 403
    assert audit_client.post("/notifications/ops/remove/").status_code == 403
    assert audit_client.get("/notifications/ops/remove/").status_code == 405
    assert NotificationTarget.objects.count() == 1


def test_edit_keeps_the_hidden_webhook_url(admin_client):
    url = "https://hooks.example.com/services/T000/B000/SECRETTOKEN?x=1"
    NotificationTarget.objects.create(name="chat", kind="webhook", address=url, when="failure")
    page = admin_client.get("/notifications/").content.decode()
    assert "SECRETTOKEN" not in page and "https://hooks.example.com/…" in page
    dialog = admin_client.get("/notifications/chat/").content.decode()
    assert 'id="notification-edit-dialog"' in dialog and "SECRETTOKEN" not in dialog
    assert 'action="/notifications/chat/edit/"' in dialog
    response = admin_client.post("/notifications/chat/edit/", {"kind": "webhook", "address": "", "when": "always",
                                                               "worker_types": "syncjob"})
    assert response.status_code == 302
    target = NotificationTarget.objects.get(name="chat")
    assert target.address == url and target.when == "always" and not target.enabled
    bad = admin_client.post("/notifications/chat/edit/", {"kind": "email", "address": "", "when": "always"})
    assert bad.status_code == 400
    html = bad.content.decode()
    assert 'data-field="address"' in html and 'id="notification-edit-dialog" class="notification-dialog" open' in html
    assert 'id="notification-dialog"' in html  # the Add dialog is still there for the Add button
    assert NotificationTarget.objects.get(name="chat").address == url
