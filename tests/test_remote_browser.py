"""In a real browser: Remotes → Add, choose MinIO, Test Connection with a wrong
secret (message shown), fix it (success), save, the grid shows the remote."""
import json
import os
import uuid

import boto3
import pytest
from playwright.sync_api import expect

from remotes.models import Remote
from tests.conftest import browser_login

# Playwright's sync API keeps an asyncio loop running in this thread for the
# whole session; Django's ORM refuses to run under it unless told it is safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def iam_key(s3_server, s3_bucket):
    """An IAM key with full access to the bucket; IAM enforcement on while the test runs."""
    iam = boto3.client("iam", endpoint_url=s3_server.url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    user = f"browser-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": [
            f"arn:aws:s3:::{s3_bucket}", f"arn:aws:s3:::{s3_bucket}/*"]}]}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    s3_server.set_auth(True)
    try:
        yield key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        s3_server.set_auth(False)


def test_add_remote_with_test_connection(transactional_db, admin_user, web_server, page, s3_server, s3_bucket,
                                         iam_key):
    access_key, secret = iam_key
    browser_login(page, web_server)
    page.click("nav.tree >> text=Remotes")
    page.wait_for_url(f"{web_server.url}/remotes/")
    page.click("#remote-add-button")
    dialog = page.locator("#remote-dialog")
    expect(dialog).to_be_visible()

    page.select_option("#id_provider", "minio")
    expect(page.locator("#id_endpoint")).to_have_value("https://minio.example.com:9000")
    expect(page.locator("#remote-region-hint")).to_contain_text("MINIO_REGION")

    page.fill("#id_remote_id", "minio-lab")
    page.fill("#id_endpoint", s3_server.url)
    page.fill("#id_bucket", s3_bucket)
    page.fill("#id_region", "us-east-1")
    page.fill("#id_access_key", access_key)
    page.fill("#id_secret_key", "not-the-secret")
    page.click("#remote-test-button")
    result = page.locator("#remote-test-result")
    expect(result).to_contain_text(f"Signature mismatch: the Secret Key is wrong for Access Key '{access_key}'.")
    assert Remote.objects.count() == 0

    page.fill("#id_secret_key", secret)
    page.click("#remote-test-button")
    expect(result).to_contain_text("Connection OK")
    expect(result).to_contain_text(f"listed bucket '{s3_bucket}'")

    # Feature probes propose quirk settings; Apply ticks the boxes before saving.
    page.click("details.remote-advanced summary")
    page.check("#id_skip_if_none_match")
    page.check("input[name=probe_features]")
    page.click("#remote-test-button")
    expect(result).to_contain_text("Proposed settings:")
    page.click("button[data-apply-quirks]")
    expect(page.locator("#id_skip_if_none_match")).not_to_be_checked()

    page.click("#remote-save-button")
    row = page.locator("#remote-row-minio-lab")
    expect(row).to_be_visible()
    expect(row).to_contain_text(s3_bucket)
    expect(row).to_contain_text("MinIO")
    remote = Remote.objects.get(remote_id="minio-lab")
    assert remote.secret_key == secret and remote.provider == "minio" and remote.skip_if_none_match is False
    assert secret not in page.content()
