"""Create a datastore: the Add Datastore dialog and `datastore create`; bad input names the field
and leaves nothing behind."""
import subprocess
import sys

import pytest

from datastores.engine.datastore import MARKER
from datastores.models import Datastore
from tests.conftest import REPO, service_env


@pytest.mark.django_db
def test_add_dialog_creates_store_and_tree_shows_it(admin_client, tmp_path):
    page = admin_client.get("/datastore/add/").content.decode()
    assert 'id="datastore-add-dialog" open' in page
    for label in ("Name:", "Backing Path:", "Comment:", "GC Schedule:"):
        assert label in page
    response = admin_client.post("/datastore/create/", {
        "name": "store1", "path": str(tmp_path / "s1"), "comment": "first store", "schedule": "daily"})
    assert response.status_code == 302 and response["Location"] == "/datastore/store1/"
    assert (tmp_path / "s1" / MARKER).exists() and (tmp_path / "s1" / ".chunks").is_dir()
    store = Datastore.objects.get(name="store1")
    assert store.comment == "first store" and store.schedule == "daily" and store.next_run is not None
    home = admin_client.get("/").content.decode()
    assert 'href="/datastore/store1/"' in home
    summary = admin_client.get("/datastore/store1/").content.decode()
    assert str(tmp_path / "s1") in summary and "Usage" in summary and "first store" in summary


@pytest.mark.django_db
@pytest.mark.parametrize("name,path,field,message", [
    ("ab", "{tmp}/x", "name", "3-32 characters"),
    ("-bad", "{tmp}/x", "name", "3-32 characters"),
    ("has space", "{tmp}/x", "name", "3-32 characters"),
    ("../etc", "{tmp}/x", "name", "3-32 characters"),
    ("good1", "relative/path", "path", "must be an absolute path"),
    ("good1", "{tmp}/foreign", "path", "is not empty and is not a datastore"),
    ("good1", "{tmp}/taken/inner", "path", "is inside datastore 'taken1'"),
    ("good1", "{tmp}/taken", "path", "already used by datastore 'taken1'"),
    ("taken1", "{tmp}/y", "name", "already exists"),
    ("good1", "", "path", "required"),
])
def test_bad_input_gives_field_error_and_creates_nothing(admin_client, tmp_path, name, path, field, message):
    from datastores.services import create_datastore
    create_datastore("taken1", str(tmp_path / "taken"))
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "precious.txt").write_text("do not touch")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    response = admin_client.post("/datastore/create/", {"name": name, "path": path.format(tmp=tmp_path),
                                                        "schedule": "daily"})
    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="datastore-add-dialog" open' in page and 'class="field-error"' in page
    assert message in page.replace("&#x27;", "'")
    # the error sits under its own field
    form = response.context["form"]
    assert field in form.errors
    assert Datastore.objects.count() == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "foreign" / "precious.txt").read_text() == "do not touch"


@pytest.mark.django_db
def test_bad_schedule_is_a_field_error(admin_client, tmp_path):
    response = admin_client.post("/datastore/create/", {"name": "store2", "path": str(tmp_path / "s"),
                                                        "schedule": "every tuesday-ish"})
    assert response.status_code == 400 and "schedule" in response.context["form"].errors
    assert not (tmp_path / "s").exists()


@pytest.mark.django_db
def test_audit_user_cannot_create(audit_client, tmp_path):
    response = audit_client.post("/datastore/create/", {"name": "store3", "path": str(tmp_path / "s")})
    assert response.status_code == 403 and not (tmp_path / "s").exists()


@pytest.mark.django_db(transaction=True)
def test_cli_create_list_remove(tmp_path):
    env = service_env()

    def cli(*args):
        return subprocess.run([sys.executable, "manage.py", *map(str, args)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60)

    ok = cli("datastore", "create", "clistore1", tmp_path / "c1", "--comment", "from cli")
    assert ok.returncode == 0 and "created datastore 'clistore1'" in ok.stdout
    assert (tmp_path / "c1" / MARKER).exists()
    bad = cli("datastore", "create", "x", tmp_path / "c2")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "name:" in bad.stderr
    assert not (tmp_path / "c2").exists()
    from io import StringIO

    from django.core.management import CommandError, call_command
    for args, field in [(["datastore", "create", "clistore2", "rel/path"], "path:"),
                        (["datastore", "create", "clistore2", str(tmp_path / "c1" / "sub")], "path:"),
                        (["datastore", "create", "clistore1", str(tmp_path / "c3")], "name:"),
                        (["datastore", "create", "clistore2", str(tmp_path / "c3"), "--gc-schedule", "nope"],
                         "gc-schedule:"),
                        (["datastore", "remove", "nosuchstore"], "name:")]:
        with pytest.raises(CommandError) as exc:
            call_command(*args, stdout=StringIO())
        assert exc.value.returncode == 2 and str(exc.value).startswith(field), args
    assert not (tmp_path / "c3").exists() and not (tmp_path / "c1" / "sub").exists()
    out = StringIO()
    call_command("datastore", "list", stdout=out)
    assert "clistore1" in out.getvalue() and "from cli" in out.getvalue() and "┌" in out.getvalue()
    out = StringIO()
    call_command("datastore", "list", "--output-format", "json", stdout=out)
    assert '"name": "clistore1"' in out.getvalue()
    out = StringIO()
    call_command("datastore", "remove", "clistore1", stdout=out)
    assert "data stays on disk" in out.getvalue()
    assert not Datastore.objects.filter(name="clistore1").exists() and (tmp_path / "c1" / MARKER).exists()
    # re-adding the same path re-uses the datastore on disk
    call_command("datastore", "create", "clistore1", str(tmp_path / "c1"), stdout=StringIO())
    assert Datastore.objects.filter(name="clistore1").exists()


@pytest.mark.django_db
def test_api_create_and_list(admin_client, tmp_path):
    response = admin_client.post("/api2/json/config/datastore", {"name": "apistore", "path": str(tmp_path / "a")})
    assert response.status_code == 200 and response.json()["data"]["name"] == "apistore"
    response = admin_client.post("/api2/json/config/datastore", {"name": "apistore2", "path": "nope"})
    assert response.status_code == 400 and "path" in response.json()["errors"]
    assert [d["name"] for d in admin_client.get("/api2/json/config/datastore").json()["data"]] == ["apistore"]
    assert admin_client.get("/api2/json/admin/datastore").json()["data"][0]["store"] == "apistore"


@pytest.mark.django_db
def test_options_and_remove_keep_data_on_disk(admin_client, tmp_path):
    from datastores.services import create_datastore
    create_datastore("opts1", str(tmp_path / "o"))
    page = admin_client.get("/datastore/opts1/options/").content.decode()
    assert "data stays on disk" in page.lower() or "The data stays on disk" in page
    bad = admin_client.post("/datastore/opts1/options/save/", {"comment": "c", "schedule": "whenever"})
    assert bad.status_code == 400 and "schedule" in bad.context["form"].errors
    ok = admin_client.post("/datastore/opts1/options/save/", {"comment": "new comment", "schedule": "sat 18:15",
                                                              "verify_new": "on"})
    assert ok.status_code == 302
    store = Datastore.objects.get(name="opts1")
    assert store.comment == "new comment" and store.schedule == "sat 18:15" and store.verify_new
    assert store.next_run.weekday() == 5
    r = admin_client.post("/datastore/opts1/remove/", follow=True)
    assert "Its data stays on disk" in r.content.decode()
    assert not Datastore.objects.filter(name="opts1").exists() and (tmp_path / "o" / MARKER).exists()
