"""`manage.py remote …` as proxmox-backup-manager: create, list (box table), show, update, remove, test."""
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from pbsweb import secretbox
from remotes.models import Remote

pytestmark = pytest.mark.django_db

SECRET = "cli-Secret-Value-7781"
CREATE = ["create", "b2-offsite", "--type", "s3", "--endpoint", "https://s3.us-west-004.backblazeb2.com",
          "--bucket", "pbs-offsite-2026", "--region", "us-west-004", "--access-key", "your-keyID-here",
          "--secret-key", SECRET]


@pytest.fixture(autouse=True)
def secret_key_file(settings):
    secretbox.ensure_key()
    settings.PBSWEB_REMOTE_TEST_TIMEOUT = 2


def remote(*args) -> str:
    out = io.StringIO()
    call_command("remote", *args, stdout=out)
    return out.getvalue()


def remote_fails(*args, returncode=2) -> tuple[str, str]:
    out = io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command("remote", *args, stdout=out)
    assert info.value.returncode == returncode, str(info.value)
    return str(info.value), out.getvalue()


def test_create_and_list_as_pbs(s3_server):
    # The guide's command, without --provider: the endpoint picks the B2 preset.
    assert remote(*CREATE).strip() == "created remote 'b2-offsite'"
    assert remote("list") == (
        "┌────────────┬──────┬────────────────────────────────────────┬──────────────────┐\n"
        "│ name       │ type │ endpoint                               │ bucket           │\n"
        "╞════════════╪══════╪════════════════════════════════════════╪══════════════════╡\n"
        "│ b2-offsite │ s3   │ https://s3.us-west-004.backblazeb2.com │ pbs-offsite-2026 │\n"
        "└────────────┴──────┴────────────────────────────────────────┴──────────────────┘\n")
    data = json.loads(remote("list", "--output-format", "json"))
    assert data == [{"name": "b2-offsite", "type": "s3", "provider": "b2",
                     "endpoint": "https://s3.us-west-004.backblazeb2.com", "bucket": "pbs-offsite-2026",
                     "region": "us-west-004", "comment": ""}]
    r = Remote.objects.get()
    assert r.secret_key == SECRET and r.provider == "b2" and r.skip_if_none_match is True  # B2 preset quirk


@pytest.mark.parametrize("change,message", [
    (("b2-offsite", "b!"), "id: 3-32 characters"),
    (("--endpoint", "s3.us-west-004.backblazeb2.com"), "--endpoint: must start with https://"),
    (("--endpoint", "https://s3.example.com/some/path"), "--endpoint: must be only scheme, host and port"),
    (("--bucket", "Invalid_Bucket"), "--bucket: may contain only lowercase letters"),
    (("--region", "US-West"), "--region: lowercase letters"),
    (("--access-key", ""), "--access-key: required"),
    (("--secret-key", ""), "--secret-key: required"),
    (("s3", "ftp"), "--type: only 's3' remotes exist, not 'ftp'"),
])
def test_bad_arguments_exit_2_and_write_nothing(change, message):
    args = list(CREATE)
    args[args.index(change[0]) + (0 if change[0] in ("b2-offsite", "s3") else 1)] = change[1]
    error, out = remote_fails(*args)
    assert error.startswith(message) and "\n" not in error
    assert out == "" and Remote.objects.count() == 0


def test_bad_flag_values():
    error, _ = remote_fails(*CREATE, "--path-style", "maybe")
    assert error == "--path-style: expected true or false, not 'maybe'"
    error, _ = remote_fails(*CREATE, "--provider", "dropbox")
    assert error.startswith("--provider: one of b2, wasabi, r2, minio, aws, other")
    assert Remote.objects.count() == 0


def test_duplicate_show_update_remove():
    remote(*CREATE, "--comment", "first")
    error, _ = remote_fails(*CREATE)
    assert error == "id: remote 'b2-offsite' already exists"
    shown = remote("show", "b2-offsite")
    assert "pbs-offsite-2026" in shown and "first" in shown and SECRET not in shown
    assert remote("update", "b2-offsite", "--secret-key", "new-secret-123", "--path-style", "false").strip() == \
        "updated remote 'b2-offsite'"
    r = Remote.objects.get()
    assert (r.secret_key, r.path_style) == ("new-secret-123", False)
    error, _ = remote_fails("update", "b2-offsite", "--bucket", "x")
    assert error == "--bucket: must be 3-63 characters long"
    assert Remote.objects.get().bucket == "pbs-offsite-2026"
    assert remote("remove", "b2-offsite").strip() == "removed remote 'b2-offsite'"
    error, _ = remote_fails("remove", "b2-offsite")
    assert error == "id: remote 'b2-offsite' does not exist"


def test_test_exit_codes(s3_server, s3_bucket):
    remote("create", "minio1", "--type", "s3", "--endpoint", s3_server.url, "--bucket", s3_bucket,
           "--region", "us-east-1", "--access-key", "testing", "--secret-key", "testing", "--provider", "minio")
    out = remote("test", "minio1", "--write")
    assert f"Connected to {s3_server.url}: listed bucket '{s3_bucket}'" in out
    assert "Write probe: uploaded, read back and deleted a test object." in out
    assert out.rstrip().endswith("TASK OK")
    assert Remote.objects.get().last_test_ok is True

    remote("update", "minio1", "--bucket", "missing-bucket-42")
    error, out = remote_fails("test", "minio1", returncode=1)
    expected = f"Bucket 'missing-bucket-42' does not exist at {s3_server.url}: create it or fix Bucket."
    assert f"TASK ERROR: {expected}" in out
    assert expected in error
    assert Remote.objects.get().last_test_ok is False
