"""End to end in a real browser (Debian chromium via Playwright) against gunicorn over HTTPS,
a Celery worker on Redis and the moto S3 server, as a new admin would go:

first login (the dashboard says what to do first) → add a datastore in the dialog → back up
with the CLI → add a MinIO remote in the dialog (Test Connection fails with a wrong secret,
then succeeds) → create a sync job on the datastore's Sync Jobs tab → Run now → the task
viewer follows the log to TASK OK → Administration → Tasks lists it → the dashboard shows
the remote's last sync. A screenshot of every step goes to test-output/flow-*.png, plus
the dashboard in the dark theme and at phone width.
"""
import json
import os
import re
import subprocess
import sys
import uuid

import boto3
import pytest
from playwright.sync_api import expect

from tests.conftest import OUTPUT_DIR, REPO, browser_login, service_env
from tests.test_syncjob_run import make_tree

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
pytestmark = pytest.mark.browser


@pytest.fixture
def iam(s3_server, s3_bucket):
    """An IAM user with full access to the bucket; the test switches enforcement on, teardown off."""
    client = boto3.client("iam", endpoint_url=s3_server.url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    user = f"flow-{uuid.uuid4().hex[:8]}"
    client.create_user(UserName=user)
    client.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": [
            f"arn:aws:s3:::{s3_bucket}", f"arn:aws:s3:::{s3_bucket}/*"]}]}))
    key = client.create_access_key(UserName=user)["AccessKey"]
    try:
        yield key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        s3_server.set_auth(False)


def shot(page, name):
    OUTPUT_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT_DIR / f"flow-{name}.png"), full_page=True)


def test_first_backup_goes_offsite(admin_user, web_server, celery_worker, page, tmp_path,
                                   s3_server, s3_bucket, iam):
    url = web_server.url
    access_key, secret = iam

    # 1. first login: the dashboard tells what to do first
    browser_login(page, web_server)
    expect(page.locator("#dash-start")).to_contain_text("Add a datastore")
    shot(page, "01-first-login")

    # 2. add a datastore with the dialog
    page.locator("#dash-start").get_by_role("link", name="Add a datastore").click()
    dialog = page.locator("#datastore-add-dialog")
    expect(dialog).to_be_visible()
    page.fill("#id_name", "store1")
    page.fill("#id_path", str(tmp_path / "store1"))
    shot(page, "02-add-datastore")
    dialog.locator("button[type=submit]").click()
    page.wait_for_url(f"{url}/datastore/store1/")

    # 3. back up with the CLI
    src = make_tree(tmp_path / "src")
    backup = subprocess.run([sys.executable, "manage.py", "backup", "store1", "--type", "host", "--id", "web01",
                             f"root.tar:{src}"], cwd=REPO, env=service_env(), capture_output=True, text=True,
                            timeout=60)
    assert backup.returncode == 0, backup.stdout + backup.stderr
    page.goto(f"{url}/datastore/store1/content/")
    expect(page.locator("#content-table")).to_contain_text("web01")
    shot(page, "03-backed-up")

    # 4. the dashboard now asks for a remote; add one (MinIO preset) and test it
    page.goto(f"{url}/")
    expect(page.locator("#dash-start")).to_contain_text("Add a remote")
    page.locator("#dash-start").get_by_role("link", name="Add a remote").click()
    page.wait_for_url(f"{url}/remotes/")
    page.click("#remote-add-button")
    expect(page.locator("#remote-dialog")).to_be_visible()
    page.select_option("#id_provider", "minio")
    page.fill("#id_remote_id", "offsite")
    page.fill("#id_endpoint", s3_server.url)
    page.fill("#id_bucket", s3_bucket)
    page.fill("#id_region", "us-east-1")
    page.fill("#id_access_key", access_key)
    page.fill("#id_secret_key", "not-the-secret")
    s3_server.set_auth(True)  # moto checks signatures only with IAM enforcement on
    page.click("#remote-test-button")
    result = page.locator("#remote-test-result")
    expect(result).to_contain_text("Signature mismatch")
    shot(page, "04-test-connection-wrong-secret")
    page.fill("#id_secret_key", secret)
    page.click("#remote-test-button")
    expect(result).to_contain_text("Connection OK")
    shot(page, "05-test-connection-ok")
    page.click("#remote-save-button")
    expect(page.locator("#remote-row-offsite")).to_be_visible()
    assert secret not in page.content()
    shot(page, "06-remote-saved")

    # 5. the datastore's Sync Jobs tab: Add a job, Run now
    page.goto(f"{url}/")
    expect(page.locator("#dash-start")).to_contain_text("Create a sync job")
    page.locator("#dash-start").get_by_role("link", name="Create a sync job").click()
    page.wait_for_url(f"{url}/datastore/store1/sync-jobs/")
    page.get_by_role("button", name="Add", exact=True).click()
    dialog = page.locator("dialog.syncjob-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("#id_id").fill("nightly")
    dialog.locator("#id_remote").select_option("offsite")
    dialog.locator("#id_schedule").fill("daily")
    shot(page, "07-add-sync-job")
    dialog.get_by_role("button", name="Add").click()
    row = page.locator('#syncjob-grid tr[data-id="nightly"]')
    expect(row).to_contain_text("never run")
    row.click()
    page.get_by_role("button", name="Run now").click()

    # 6. the task viewer follows the log live until TASK OK
    page.wait_for_url(re.compile(r".*/tasks/UPID:.*"))
    log = page.locator("#task-log")
    try:
        expect(log).to_contain_text("Starting datastore sync job", timeout=30000)
        expect(log).to_contain_text("TASK OK", timeout=45000)
    except AssertionError:
        print(celery_worker.log_path.read_text()[-3000:], web_server.log_path.read_text()[-2000:])
        raise
    expect(log).to_contain_text("Summary: uploaded")
    shot(page, "08-task-ok")

    # 7. Administration → Tasks lists it
    page.click("nav.tree >> text=Tasks")
    page.wait_for_url(f"{url}/tasks/")
    task_row = page.locator("table.tasks tbody tr", has_text="Sync Job").first
    expect(task_row).to_contain_text("OK")
    shot(page, "09-tasks")

    # 8. the dashboard shows the remote's last sync
    page.click("nav.tree >> text=Dashboard")
    page.wait_for_url(f"{url}/")
    remote_row = page.locator('#dash-remote-grid tr[data-remote="offsite"]')
    expect(remote_row.locator(".last-sync")).to_contain_text("job nightly")
    expect(remote_row).to_contain_text("up to date")
    expect(page.locator("#dash-start")).to_have_count(0)
    expect(page.locator('#dash-task-summary tr[data-type="syncjob"]')).to_contain_text("1")
    expect(page.locator("#dash-sync-chart .uplot")).to_be_visible()
    shot(page, "10-dashboard")
    page.click("[data-theme-toggle]")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    shot(page, "11-dashboard-dark")
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(remote_row).to_be_visible()
    shot(page, "12-dashboard-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
