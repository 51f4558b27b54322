"""Configuration → Remotes: the grid, Add / Edit / Remove through the dialog form."""
import json

import pytest
from django.apps import apps

from pbsweb import secretbox
from remotes.models import Remote

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
SECRET = "Sup3r-Secret-Value-0042"


@pytest.fixture(autouse=True)
def secret_key_file():
    secretbox.ensure_key()


def form_data(**overrides):
    data = {"remote_id": "b2-offsite", "provider": "b2", "endpoint": "https://s3.us-west-004.backblazeb2.com",
            "bucket": "pbs-offsite-2026", "region": "us-west-004", "access_key": "004abcdef0000000001",
            "secret_key": SECRET, "path_style": "on", "no_checksum_headers": "on", "min_storage_days": "",
            "comment": "off-site copy"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_grid_lists_remotes_and_add_dialog_has_presets(admin_client):
    html = admin_client.get("/remotes/").content.decode()
    assert "No remotes yet" in html
    dialog = admin_client.get("/remotes/add/", **HTMX).content.decode()
    assert "<dialog" in dialog and "Add: S3 Remote" in dialog
    for label in ("Backblaze B2", "Wasabi", "Cloudflare R2", "MinIO", "Amazon S3", "Other S3-compatible",
                  "Path-style addressing", "CA Certificate", "Fingerprint", "Skip If-None-Match header",
                  "Test Connection", "Write test (put/get/delete a probe object)", "Probe provider features"):
        assert label in dialog, label
    assert 'id="remote-presets"' in dialog and "https://s3.{{region}}.backblazeb2.com" in dialog


def test_add_saves_and_grid_shows_the_remote(admin_client):
    response = admin_client.post("/remotes/add/", form_data())
    assert response.status_code == 302
    remote = Remote.objects.get(remote_id="b2-offsite")
    assert remote.secret_key == SECRET and SECRET not in remote.secret_key_encrypted
    assert (remote.provider, remote.region, remote.path_style, remote.skip_if_none_match) == ("b2", "us-west-004", True, False)
    html = admin_client.get("/remotes/").content.decode()
    for text in ("b2-offsite", "Backblaze B2", "https://s3.us-west-004.backblazeb2.com", "pbs-offsite-2026",
                 "us-west-004", "not tested", "Remote &#x27;b2-offsite&#x27; added."):
        assert text in html, text


def test_wasabi_defaults_to_90_min_storage_days_and_region_from_endpoint(admin_client):
    admin_client.post("/remotes/add/", form_data(remote_id="wasabi1", provider="wasabi", region="",
                                                 endpoint="https://s3.eu-central-1.wasabisys.com"))
    remote = Remote.objects.get(remote_id="wasabi1")
    assert (remote.min_storage_days, remote.region) == (90, "eu-central-1")


@pytest.mark.parametrize("overrides,message", [
    ({"remote_id": "ab"}, "ID: 3-32 characters: letters, digits, &#x27;_&#x27; and &#x27;-&#x27;, not starting with &#x27;-&#x27;"),
    ({"remote_id": "-offsite"}, "ID: 3-32 characters"),
    ({"remote_id": "has space"}, "ID: 3-32 characters"),
    ({"endpoint": "s3.us-west-004.backblazeb2.com"}, "Endpoint: must start with https://"),
    ({"endpoint": "https://s3.us-west-004.backblazeb2.com/pbs-offsite-2026"},
     "Endpoint: must be only scheme, host and port: no path or query"),
    ({"bucket": "My_Bucket"}, "Bucket: may contain only lowercase letters, digits, &#x27;-&#x27; and &#x27;.&#x27;"),
    ({"bucket": "ab"}, "Bucket: must be 3-63 characters long"),
    ({"bucket": ""}, "Bucket: required"),
    ({"region": "", "endpoint": "https://minio.lan:9000"}, "Region: required, e.g. us-west-004"),
    ({"region": "US West"}, "Region: lowercase letters, digits"),
    ({"access_key": ""}, "Access Key: required"),
    ({"secret_key": ""}, "Secret Key: required"),
    ({"ca_bundle": "not a certificate"}, "CA Certificate: paste the CA certificate in PEM format"),
])
def test_bad_input_names_the_field_and_saves_nothing(admin_client, overrides, message):
    response = admin_client.post("/remotes/add/", form_data(**overrides))
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html
    assert 'class="field-error"' in html
    assert Remote.objects.count() == 0
    assert SECRET not in html  # the typed secret is not rendered back


def test_duplicate_id_is_refused(admin_client):
    assert admin_client.post("/remotes/add/", form_data()).status_code == 302
    response = admin_client.post("/remotes/add/", form_data(bucket="another-bucket"))
    assert response.status_code == 400
    assert "ID: remote &#x27;b2-offsite&#x27; already exists" in response.content.decode()
    assert list(Remote.objects.values_list("bucket", flat=True)) == ["pbs-offsite-2026"]


def test_htmx_add_shows_errors_inline_in_the_dialog(admin_client):
    response = admin_client.post("/remotes/add/", form_data(bucket="Bad_Bucket"), **HTMX)
    assert response.status_code == 200  # htmx swaps 2xx only: the dialog comes back with its errors
    html = response.content.decode()
    assert html.lstrip().startswith("<dialog") and "Bucket: may contain only lowercase letters" in html
    assert Remote.objects.count() == 0
    ok = admin_client.post("/remotes/add/", form_data(), **HTMX)
    assert ok.status_code == 204 and ok["HX-Redirect"] == "/remotes/"


def test_edit_keeps_secret_when_left_blank(admin_client):
    admin_client.post("/remotes/add/", form_data())
    dialog = admin_client.get("/remotes/b2-offsite/edit/", **HTMX).content.decode()
    assert "Edit: S3 Remote b2-offsite" in dialog and "Leave blank to keep the stored secret key." in dialog
    assert SECRET not in dialog
    response = admin_client.post("/remotes/b2-offsite/edit/", form_data(secret_key="", comment="changed",
                                                                         skip_if_none_match="on"))
    assert response.status_code == 302
    remote = Remote.objects.get()
    assert (remote.secret_key, remote.comment, remote.skip_if_none_match) == (SECRET, "changed", True)
    admin_client.post("/remotes/b2-offsite/edit/", form_data(secret_key="a-new-secret-9"))
    assert Remote.objects.get().secret_key == "a-new-secret-9"
    bad = admin_client.post("/remotes/b2-offsite/edit/", form_data(endpoint="ftp://x"))
    assert bad.status_code == 400 and "Endpoint: must start with https://" in bad.content.decode()
    assert Remote.objects.get().endpoint == "https://s3.us-west-004.backblazeb2.com"


def test_remove(admin_client):
    admin_client.post("/remotes/add/", form_data())
    html = admin_client.get("/remotes/").content.decode()
    assert 'data-confirm="Remove remote b2-offsite?' in html
    response = admin_client.post("/remotes/b2-offsite/remove/", follow=True)
    assert Remote.objects.count() == 0
    assert "Remote &#x27;b2-offsite&#x27; removed." in response.content.decode()


def test_remove_refused_while_a_sync_job_uses_it(admin_client, tmp_path):
    admin_client.post("/remotes/add/", form_data())
    Datastore = apps.get_model("datastores", "Datastore")
    SyncJob = apps.get_model("syncjobs", "SyncJob")
    store = Datastore.objects.create(name="store1", path=str(tmp_path / "store1"))
    SyncJob.objects.create(job_id="daily-s3-sync", store=store, remote=Remote.objects.get(), remote_store="backups")
    html = admin_client.post("/remotes/b2-offsite/remove/", follow=True).content.decode()
    assert ("Remote &#x27;b2-offsite&#x27; is used by sync job &#x27;daily-s3-sync&#x27;: remove that job or "
            "point it at another remote first.") in html
    assert Remote.objects.count() == 1


def test_audit_user_sees_grid_without_buttons(audit_client):
    Remote(remote_id="seen1", endpoint="https://s3.example.com", bucket="bucket1", region="us-east-1",
           access_key="k", secret_key_encrypted=secretbox.encrypt_secret(SECRET)).save()
    html = audit_client.get("/remotes/").content.decode()
    assert "seen1" in html and "remote-add-button" not in html and ">Edit<" not in html
    assert audit_client.post("/remotes/add/", form_data()).status_code == 403


def test_detail_page_shows_settings_usage_chart_and_cost(admin_client):
    import datetime

    from django.utils import timezone

    from remotes.models import record_usage
    admin_client.post("/remotes/add/", form_data(remote_id="wasabi1", provider="wasabi",
                                                 endpoint="https://s3.eu-central-1.wasabisys.com",
                                                 region="eu-central-1"))
    remote = Remote.objects.get()
    Remote.objects.filter(pk=remote.pk).update(stored_bytes=2 * 10**12)
    today = timezone.localdate()
    record_usage(remote, {"PUT": 1200, "LIST": 3, "HEAD": 10, "GET": 0, "DELETE": 2,
                          "bytes_up": 5 * 2**30, "bytes_down": 2**20}, task="UPID:x:1")
    record_usage("wasabi1", {"PUT": 300, "bytes_up": 2**30}, day=today - datetime.timedelta(days=1))
    record_usage(remote, {"PUT": 1}, task="UPID:x:1")  # adds to that task's row
    assert remote.usage.get(task_upid="UPID:x:1").put == 1201
    html = admin_client.get("/remotes/wasabi1/").content.decode()
    for text in ("https://s3.eu-central-1.wasabisys.com", "stored encrypted, not shown", "1.82 TiB",
                 "Requests per day by class (last 30 days)", "<svg class=\"remote-chart\"",
                 f"{today:%Y-%m-%d}: 0 GET, 1201 PUT, 10 HEAD, 2 DELETE, 3 LIST",
                 "$6.99 per TB-month", "Minimum storage term</th><td>90 days",
                 "1516 (1501 PUT", "$13.98", "Early deletion (90-day minimum)", "30 days"):
        assert text in html, text
    assert SECRET not in html



def test_api_create_show_update_delete(admin_client, audit_user):
    from django.test import Client
    audit_client = Client()
    audit_client.force_login(audit_user)
    url = "/api2/json/config/remote"
    params = {"name": "api-remote", "type": "s3", "endpoint": "https://s3.eu-central-1.wasabisys.com",
              "bucket": "Bad_Bucket", "region": "eu-central-1", "access-key": "AKIA1", "secret-key": SECRET,
              "provider": "wasabi"}
    bad = admin_client.post(url, params)
    assert bad.status_code == 400
    assert bad.json()["errors"]["bucket"].startswith("may contain only lowercase letters")
    assert Remote.objects.count() == 0
    assert admin_client.post(url, {**params, "bucket": "good-bucket"}).json() == {"data": None}
    listed = admin_client.get(url).json()["data"]
    assert [r["name"] for r in listed] == ["api-remote"] and listed[0]["min-storage-days"] == 90
    assert SECRET not in json.dumps(listed) and "secret" not in json.dumps(listed)
    put = admin_client.put(f"{url}/api-remote", json.dumps({"comment": "via api", "path-style": False}),
                           content_type="application/json")
    assert put.status_code == 200
    shown = admin_client.get(f"{url}/api-remote").json()["data"]
    assert (shown["comment"], shown["path-style"], shown["bucket"]) == ("via api", False, "good-bucket")
    assert Remote.objects.get().secret_key == SECRET  # an update without secret-key keeps it
    bad_put = admin_client.put(f"{url}/api-remote", json.dumps({"endpoint": "s3.example.com"}),
                               content_type="application/json")
    assert bad_put.status_code == 400 and bad_put.json()["errors"]["endpoint"].startswith("must start with https://")
    assert audit_client.get(f"{url}/api-remote").status_code == 200
    assert audit_client.delete(f"{url}/api-remote").status_code == 403
    assert admin_client.delete(f"{url}/api-remote").json() == {"data": None}
    assert Remote.objects.count() == 0
    assert admin_client.get(f"{url}/api-remote").status_code == 404


def test_ca_certificate_is_written_for_the_client_and_removed_with_the_remote(admin_client, tmp_path, settings):
    from tests.test_remote_client import make_self_signed
    cert_path, _key, _fingerprint = make_self_signed(tmp_path)
    pem = cert_path.read_text()
    admin_client.post("/remotes/add/", form_data(remote_id="minio-tls", provider="minio",
                                                 endpoint="https://127.0.0.1:9000", region="us-east-1",
                                                 ca_bundle=pem))
    remote = Remote.objects.get()
    cfg = remote.config()
    assert cfg.ca_bundle == str(settings.DATA_DIR / "remotes" / "minio-tls-ca.pem")
    assert open(cfg.ca_bundle).read().strip() == pem.strip()
    remote.client()  # builds with the CA file
    assert "CA Certificate" in admin_client.get("/remotes/minio-tls/edit/", **HTMX).content.decode()
    assert "custom CA certificate" in admin_client.get("/remotes/minio-tls/").content.decode()
    admin_client.post("/remotes/minio-tls/remove/")
    assert not (settings.DATA_DIR / "remotes" / "minio-tls-ca.pem").exists()
