"""In the browser: Datastore → Sync Jobs, Add a job in the dialog (a bad value
first, shown under its field), Run now, and the task viewer follows the log
to TASK OK (gunicorn + a Celery worker on Redis + moto)."""
import os
import re

import pytest
from playwright.sync_api import expect

from syncjobs.models import SyncJob
from tests.conftest import browser_login
from tests.test_syncjob_run import bucket_keys, make_remote, make_store

# Playwright's sync API runs an event loop in this thread; the test's own ORM calls are synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
pytestmark = pytest.mark.browser


def test_add_and_run_in_browser(admin_user, web_server, celery_worker, page, tmp_path,
                                s3_server, s3_client, s3_bucket):
    make_store(tmp_path)
    make_remote(s3_server, s3_bucket)
    browser_login(page, web_server)

    page.goto(f"{web_server.url}/datastore/store1/sync-jobs/")
    expect(page.locator(".tabs a.active")).to_have_text("Sync Jobs")
    page.get_by_role("button", name="Add", exact=True).click()
    dialog = page.locator("dialog.syncjob-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".window-title")).to_contain_text("Add: Sync Job - Push Direction")
    expect(dialog.locator("#id_store")).to_have_value("store1")

    dialog.locator("#id_id").fill("offsite")
    dialog.locator("#id_remote").select_option("s3-test")
    dialog.locator("#id_schedule").fill("every day")
    dialog.locator("#id_rate_out").fill("100MiB")
    dialog.get_by_role("button", name="Add").click()
    error = page.locator('dialog.syncjob-dialog .field-error[data-field="schedule"]')
    expect(error).to_contain_text("invalid schedule")
    assert not SyncJob.objects.exists()

    dialog = page.locator("dialog.syncjob-dialog")
    dialog.locator("#id_schedule").fill("0 2 * * *")
    dialog.get_by_role("button", name="Add").click()
    row = page.locator('#syncjob-grid tr[data-id="offsite"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("s3-test")
    expect(row).to_contain_text("store1")  # remote store defaults to the datastore name
    expect(row).to_contain_text("never run")

    row.click()
    page.get_by_role("button", name="Run now").click()
    page.wait_for_url(re.compile(r".*/tasks/UPID:.*"))
    expect(page.locator(".panel-title")).to_contain_text("Sync Job")
    try:
        expect(page.locator("#task-log")).to_contain_text("Starting datastore sync job", timeout=30000)
        expect(page.locator("#task-log")).to_contain_text("TASK OK", timeout=60000)
    except AssertionError:
        from pbsweb.models import Task
        t = Task.objects.get(worker_type="syncjob")
        print("task", t.state, t.status, open(t.log_path).read())
        print(celery_worker.log_path.read_text()[-3000:], web_server.log_path.read_text()[-3000:])
        raise
    expect(page.locator("#task-log")).to_contain_text("Summary: uploaded")

    assert "backups" not in "".join(bucket_keys(s3_client, s3_bucket))
    assert any(k.endswith("/index.json.blob") for k in bucket_keys(s3_client, s3_bucket, "store1/"))

    # back on the tab, the grid shows the last run
    page.goto(f"{web_server.url}/datastore/store1/sync-jobs/")
    expect(page.locator('#syncjob-grid tr[data-id="offsite"] .sync-status')).to_have_text("OK")

    # the dialog's prune simulator of an own remote retention: the bucket's snapshot, as the keep options say
    page.locator('#syncjob-grid tr[data-id="offsite"]').click()
    page.get_by_role("button", name="Edit").click()
    dialog = page.locator("dialog.syncjob-dialog")
    dialog.locator("#id_keep_last").fill("1")
    dialog.get_by_role("button", name="Simulate retention").click()
    expect(dialog.locator("#sync-prune-sim .sim-summary")).to_have_text("1 kept, 0 removed")
    expect(dialog.locator("#sync-prune-sim tr.sim-keep")).to_have_count(1)
    dialog.get_by_role("button", name="Cancel").click()

    # Pull as of…: a push job refuses, the reason under the field
    page.locator('#syncjob-grid tr[data-id="offsite"]').click()
    page.get_by_role("button", name="Pull as of…").click()
    dialog = page.locator("dialog.syncjob-as-of-dialog")
    dialog.locator("#id_as_of").fill("2026-01-01T00:00:00Z")
    dialog.get_by_role("button", name="Pull").click()
    expect(page.locator('dialog.syncjob-as-of-dialog .field-error[data-field="as_of"]')).to_contain_text(
        "only a pull job reads the bucket as of a time")
