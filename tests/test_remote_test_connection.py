"""Test Connection from the Add/Edit dialog and the grid, against the real moto
server (IAM enforcement for the auth failures) and loopback sockets; asserts the
message the user sees in the HTML fragment."""
import json
import socket
import threading
import time
import uuid

import boto3
import pytest

from pbsweb import secretbox
from pbsweb.models import Task
from remotes.models import Remote

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def secret_key_file(settings):
    secretbox.ensure_key()
    settings.PBSWEB_REMOTE_TEST_TIMEOUT = 2


def dialog_data(endpoint, bucket, **overrides):
    data = {"remote_id": "minio1", "provider": "minio", "endpoint": endpoint, "bucket": bucket,
            "region": "us-east-1", "access_key": "testing", "secret_key": "testing", "path_style": "on",
            "no_checksum_headers": "on"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def run_test(client, data, url="/remotes/add/test/"):
    response = client.post(url, data, **HTMX)
    assert response.status_code == 200
    return response.content.decode()


def test_success_shows_latency_and_task_log(admin_client, s3_server, s3_bucket):
    html = run_test(admin_client, dialog_data(s3_server.url, s3_bucket))
    assert "Connection OK &mdash; latency" in html
    assert f"Connected to {s3_server.url}: listed bucket &#x27;{s3_bucket}&#x27; in" in html
    task = Task.objects.get(worker_type="remotetest")
    assert task.state == "ok" and task.worker_id == "minio1"
    assert f'href="/tasks/{task.upid}/"' in html
    assert "testing" not in json.dumps(task.arguments.get("config", {}).get("secret_key", ""))
    assert Remote.objects.count() == 0  # testing saves nothing


def test_write_probe_and_feature_probes_propose_quirks(admin_client, s3_server, s3_bucket, s3_client):
    html = run_test(admin_client, dialog_data(s3_server.url, s3_bucket, write_probe="on", probe_features="on",
                                              skip_if_none_match="on", delete_via_delete_object="on"))
    assert "Write probe: uploaded, read back and deleted a test object." in html
    assert "Conditional PUT (If-None-Match: *): supported; turn off &#x27;Skip If-None-Match header&#x27;" in html
    assert "Proposed settings:" in html
    apply = html.split('data-apply-quirks="', 1)[1].split('"', 1)[0].replace("&quot;", '"')
    assert json.loads(apply) == {"skip_if_none_match": False, "delete_via_delete_object": False}
    assert s3_client.list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0  # probes cleaned up


@pytest.fixture
def iam_keys(s3_server, s3_bucket):
    """IAM users on moto, made while auth is off: 'putonly' may only PutObject,
    'full' may list and write. Then IAM enforcement on; off again afterwards."""
    iam = boto3.client("iam", endpoint_url=s3_server.url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    statements = {
        "putonly": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{s3_bucket}/*"}],
        "full": [{"Effect": "Allow", "Action": "s3:*", "Resource": [f"arn:aws:s3:::{s3_bucket}",
                                                                   f"arn:aws:s3:::{s3_bucket}/*"]}],
    }
    keys = {}
    for name, statement in statements.items():
        user = f"{name}-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": statement}))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        keys[name] = (key["AccessKeyId"], key["SecretAccessKey"])
    s3_server.set_auth(True)
    try:
        yield keys
    finally:
        s3_server.set_auth(False)


def test_wrong_secret_names_secret_key(admin_client, s3_server, s3_bucket, iam_keys):
    access_key, secret = iam_keys["full"]
    html = run_test(admin_client, dialog_data(s3_server.url, s3_bucket, access_key=access_key,
                                              secret_key="wrong-" + secret[:10]))
    assert (f"Signature mismatch: the Secret Key is wrong for Access Key &#x27;{access_key}&#x27;. "
            "Re-enter Secret Key exactly as the provider showed it.") in html
    assert "Connection OK" not in html
    assert Task.objects.get(worker_type="remotetest").state == "error"
    ok = run_test(admin_client, dialog_data(s3_server.url, s3_bucket, access_key=access_key, secret_key=secret))
    assert "Connection OK" in ok


def test_key_without_list_permission(admin_client, s3_server, s3_bucket, iam_keys):
    access_key, secret = iam_keys["putonly"]
    html = run_test(admin_client, dialog_data(s3_server.url, s3_bucket, access_key=access_key, secret_key=secret))
    assert f"Access denied: the key lacks list permission on bucket &#x27;{s3_bucket}&#x27;. " in html
    assert "s3:ListBucket" in html  # MinIO's permission help
    assert secret not in html


def test_missing_bucket(admin_client, s3_server):
    html = run_test(admin_client, dialog_data(s3_server.url, "no-such-bucket-4711"))
    assert (f"Bucket &#x27;no-such-bucket-4711&#x27; does not exist at {s3_server.url}: "
            "create it or fix Bucket.") in html


def test_nothing_listening(admin_client):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    html = run_test(admin_client, dialog_data(f"http://127.0.0.1:{port}", "bucket1"))
    assert f"Connection refused: nothing listens at 127.0.0.1:{port}. Check Endpoint (host and port)." in html


@pytest.fixture
def silent_port():
    """A server that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held, stop = [], threading.Event()

    def accept():
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    srv.close()


def test_server_never_answers_times_out_quickly(admin_client, silent_port):
    t0 = time.monotonic()
    html = run_test(admin_client, dialog_data(f"http://127.0.0.1:{silent_port}", "bucket1"))
    assert time.monotonic() - t0 < 10
    assert (f"No answer from 127.0.0.1:{silent_port} within 2 s: the server accepted the connection but did "
            "not respond.") in html


def test_bad_fields_are_reported_without_a_request(admin_client):
    html = run_test(admin_client, dialog_data("s3.example.com", "Bad_Bucket"))
    assert "Endpoint: must start with https://" in html
    assert "Bucket: may contain only lowercase letters" in html


def test_grid_test_records_last_result(admin_client, s3_server, s3_bucket):
    remote = Remote(remote_id="minio1", endpoint=s3_server.url, bucket=s3_bucket, region="us-east-1",
                    access_key="testing", provider="minio")
    remote.secret_key = "testing"
    remote.save()
    row = admin_client.post("/remotes/minio1/test/", **HTMX).content.decode()
    assert row.lstrip().startswith('<tr id="remote-row-minio1"') and ">OK (" in row
    remote.refresh_from_db()
    assert remote.last_test_ok is True and remote.last_test_latency_ms > 0 and remote.last_test_upid
    Remote.objects.filter(pk=remote.pk).update(bucket="gone-bucket-123")
    row = admin_client.post("/remotes/minio1/test/", **HTMX).content.decode()
    assert ">Error<" in row and "Bucket &#x27;gone-bucket-123&#x27; does not exist" in row
    html = admin_client.get("/remotes/minio1/").content.decode()
    assert "Bucket &#x27;gone-bucket-123&#x27; does not exist" in html


def test_edit_dialog_test_uses_stored_secret_when_blank(admin_client, s3_server, s3_bucket):
    remote = Remote(remote_id="minio1", endpoint=s3_server.url, bucket=s3_bucket, region="us-east-1",
                    access_key="testing", provider="minio")
    remote.secret_key = "testing"
    remote.save()
    html = run_test(admin_client, dialog_data(s3_server.url, s3_bucket, secret_key=""),
                    url="/remotes/minio1/edit/test/")
    assert "Connection OK" in html
    remote.refresh_from_db()
    assert remote.last_test_time is None  # dialog values are not the saved remote
