"""The role matrix: users holding one role on one ACL path, against every page and API path.

ROLE_PRIVILEGES is PBS's role table (reference/pbs-internals.md §13), written out here rather
than taken from pbsweb.access, so the test checks the implementation against PBS. ENDPOINTS
says which privilege on which path each page / API call needs, as PBS documents it:
Datastore.Audit to view a store, Datastore.Modify to change its config and jobs,
Datastore.Backup/Prune/Verify/Read for those actions, Datastore.Allocate to create/remove a
store, Remote.Audit to view remotes, Remote.Modify to change them, Sys.Audit for tasks and
system config, Sys.Modify to change it, Permissions.Modify for access control.

A grant on a path applies to that path and below (propagate). "Allowed" means any answer but
403; "denied" means 403. Lists (LIST) answer every user, filtered to what they may see.
An API token of the user gets the same answers as the user.
"""
import json

import pytest

from pbsweb import secretbox

pytestmark = pytest.mark.django_db

ALL = {"Sys.Audit", "Sys.Modify", "Permissions.Modify", "Datastore.Audit", "Datastore.Allocate",
       "Datastore.Modify", "Datastore.Read", "Datastore.Verify", "Datastore.Backup", "Datastore.Prune",
       "Remote.Audit", "Remote.Modify", "Remote.Read", "Remote.DatastoreBackup", "Remote.DatastorePrune",
       "Remote.DatastoreModify"}
ROLE_PRIVILEGES = {
    "Admin": ALL,
    "NoAccess": set(),
    # PBS's Audit is Sys.Audit + Datastore.Audit; pbsweb's Audit also audits remotes (read-only, no
    # secrets are ever shown), which test_remote_add relies on: kept, and noted in the report.
    "Audit": {"Sys.Audit", "Datastore.Audit", "Remote.Audit"},
    "DatastoreAdmin": {"Datastore.Audit", "Datastore.Modify", "Datastore.Read", "Datastore.Verify",
                       "Datastore.Backup", "Datastore.Prune"},
    "DatastoreBackup": {"Datastore.Backup"},
    "DatastoreReader": {"Datastore.Audit", "Datastore.Verify", "Datastore.Read"},
    "RemoteAdmin": {"Remote.Audit", "Remote.Modify", "Remote.Read"},
    "RemoteSyncOperator": {"Remote.Audit", "Remote.Read"},
}
GRANT_PATHS = ["/", "/datastore/store1", "/remote/remote1"]

UPID = "{upid}"
DS = "/datastore/store1"
RM = "/remote/remote1"
LIST = "LIST"

# (method, url, privilege or LIST, ACL path (for LIST: the path whose Audit makes the item visible),
#  body, is_api). Destructive calls come last.
ENDPOINTS = [
    # -- pages --------------------------------------------------------------------------------
    ("GET", "/", "Sys.Audit", "/", None, False),
    ("GET", "/tasks/", "Sys.Audit", "/", None, False),
    ("GET", "/tasks/{upid}/", "Sys.Audit", "/", None, False),
    ("GET", "/tasks/{upid}/log/", "Sys.Audit", "/", None, False),
    ("GET", "/access/", "Sys.Audit", "/", None, False),
    ("GET", "/access/permissions/", "Sys.Audit", "/", None, False),
    ("GET", "/access/tokens/", "Sys.Audit", "/", None, False),
    ("GET", "/traffic-control/", "Sys.Audit", "/", None, False),
    # the overview and the navigation tree show the stores a user may audit or back up to (PBS)
    ("GET", "/datastore/", LIST, ("Datastore.Audit|Datastore.Backup", DS, "/datastore/store1/"), None, False),
    ("GET", "/datastore/store1/", "Datastore.Audit", DS, None, False),
    ("GET", "/datastore/store1/content/", "Datastore.Audit", DS, None, False),
    ("GET", "/datastore/store1/prune-gc/", "Datastore.Audit", DS, None, False),
    ("GET", "/datastore/store1/verify-jobs/", "Datastore.Audit", DS, None, False),
    ("GET", "/datastore/store1/options/", "Datastore.Audit", DS, None, False),
    ("GET", "/datastore/store1/encryption/", "Datastore.Audit", DS, None, False),
    ("GET", "/datastore/store1/sync-jobs/", "Datastore.Audit", DS, None, False),
    ("GET", "/datastore/store1/encryption/download/", "Datastore.Modify", DS, None, False),
    ("GET", "/remotes/", LIST, ("Remote.Audit", RM, "/remotes/remote1/"), None, False),
    ("GET", "/remotes/remote1/", "Remote.Audit", RM, None, False),
    ("GET", "/remotes/add/", "Remote.Modify", "/remote", None, False),
    ("GET", "/sync-jobs/job1/log/", "Datastore.Audit", DS, None, False),
    ("POST", "/datastore/create/", "Datastore.Allocate", "/datastore", {}, False),
    ("POST", "/datastore/store1/options/save/", "Datastore.Modify", DS, {"schedule": "daily"}, False),
    ("POST", "/datastore/store1/prune-jobs/add/", "Datastore.Modify", DS, {}, False),
    ("POST", "/datastore/store1/verify-jobs/add/", "Datastore.Modify", DS, {}, False),
    ("POST", "/datastore/store1/encryption/generate/", "Datastore.Modify", DS, {}, False),
    ("POST", "/datastore/store1/gc/start/", "Datastore.Modify", DS, {}, False),
    ("POST", "/datastore/store1/prune/", "Datastore.Prune", DS, {"keep_last": "1"}, False),
    ("POST", "/datastore/store1/verify/", "Datastore.Verify", DS, {}, False),
    # one snapshot: reading its files needs Datastore.Read, its notes/protection Datastore.Modify
    ("GET", "/datastore/store1/notes/{snap}", "Datastore.Audit", DS, None, False),
    ("GET", "/datastore/store1/download/{snap}?file=index.json.blob", "Datastore.Read", DS, None, False),
    ("GET", "/datastore/store1/browse/{snap}", "Datastore.Read", DS, None, False),
    ("POST", "/datastore/store1/notes-save/{snap}", "Datastore.Modify", DS, {"notes": "n"}, False),
    ("POST", "/datastore/store1/protect/{snap}", "Datastore.Modify", DS, {"protected": "false"}, False),
    ("POST", "/datastore/store1/verify-snapshot/{snap}", "Datastore.Verify", DS, {}, False),
    ("POST", "/remotes/add/", "Remote.Modify", "/remote", {}, False),
    ("POST", "/remotes/remote1/edit/", "Remote.Modify", RM, {}, False),
    ("POST", "/remotes/remote1/test/", "Remote.Modify", RM, {}, False),
    ("POST", "/sync-jobs/job1/edit/", "Datastore.Modify", DS, {}, False),
    ("POST", "/sync-jobs/job1/run/", "Datastore.Modify", DS, {}, False),
    ("POST", "/traffic-control/add/", "Sys.Modify", "/", {}, False),
    ("POST", "/access/users/add/", "Permissions.Modify", "/", {}, False),
    ("POST", "/access/permissions/add/", "Permissions.Modify", "/", {}, False),
    ("POST", "/access/tokens/add/", "Permissions.Modify", "/", {}, False),
    ("POST", "/tasks/{upid}/stop/", "Sys.Modify", "/", {}, False),
    # -- API ----------------------------------------------------------------------------------
    ("GET", "/api2/json/admin/datastore", LIST, ("Datastore.Audit|Datastore.Backup", DS, '"store1"'), None, True),
    ("GET", "/api2/json/config/datastore", LIST, ("Datastore.Audit", DS, '"store1"'), None, True),
    ("GET", "/api2/json/config/remote", LIST, ("Remote.Audit", RM, '"remote1"'), None, True),
    ("GET", "/api2/json/admin/datastore/store1/snapshots", "Datastore.Audit", DS, None, True),
    ("GET", "/api2/json/admin/datastore/store1/status", "Datastore.Audit", DS, None, True),
    ("GET", "/api2/json/admin/datastore/store1/groups", "Datastore.Audit", DS, None, True),
    ("GET", "/api2/json/admin/datastore/store1/namespace", "Datastore.Audit", DS, None, True),
    ("GET", "/api2/json/admin/datastore/store1/gc", "Datastore.Audit", DS, None, True),
    ("GET", "/api2/json/config/datastore/store1", "Datastore.Audit", DS, None, True),
    ("GET", "/api2/json/config/remote/remote1", "Remote.Audit", RM, None, True),
    ("GET", "/api2/json/config/sync/job1", "Datastore.Audit", DS, None, True),
    ("GET", "/api2/json/config/traffic-control", "Sys.Audit", "/", None, True),
    ("GET", "/api2/json/nodes/localhost/tasks", "Sys.Audit", "/", None, True),
    ("GET", "/api2/json/nodes/localhost/tasks/{upid}", "Sys.Audit", "/", None, True),
    ("GET", "/api2/json/nodes/localhost/tasks/{upid}/log", "Sys.Audit", "/", None, True),
    ("POST", "/api2/json/admin/datastore/store1/gc", "Datastore.Modify", DS, {}, True),
    ("POST", "/api2/json/admin/datastore/store1/verify", "Datastore.Verify", DS, {}, True),
    ("POST", "/api2/json/admin/datastore/store1/prune", "Datastore.Prune", DS, {"keep-last": 1, "dry-run": True},
     True),
    ("POST", "/api2/json/admin/datastore/store1/prune-datastore", "Datastore.Prune", DS,
     {"keep-last": 1, "dry-run": True}, True),
    ("POST", "/api2/json/config/datastore", "Datastore.Allocate", "/datastore", {"name": "x"}, True),
    ("POST", "/api2/json/config/remote", "Remote.Modify", "/remote", {"name": "x"}, True),
    ("PUT", "/api2/json/config/remote/remote1", "Remote.Modify", RM, {"comment": "changed"}, True),
    ("POST", "/api2/json/config/remote/remote1/test", "Remote.Modify", RM, {}, True),
    ("POST", "/api2/json/config/sync", "Datastore.Modify", DS, {"store": "store1"}, True),
    # an edit is checked as the job it results in: job1 pushes store1 to remote1 (issue 16 #2)
    ("PUT", "/api2/json/config/sync/job1", [("Datastore.Modify", DS), ("Remote.DatastoreBackup", RM)], None,
     {"comment": "changed"}, True),
    ("POST", "/api2/json/admin/sync/job1/run", "Datastore.Modify", DS, {}, True),
    ("POST", "/api2/json/config/traffic-control", "Sys.Modify", "/", {}, True),
    ("DELETE", "/api2/json/nodes/localhost/tasks/{upid}", "Sys.Modify", "/", None, True),
    ("DELETE", "/api2/json/admin/datastore/store1/snapshots", "Datastore.Prune", DS, None, True),
    # destructive last: job1 uses store1 and remote1, so these are refused (409/message), not done
    ("DELETE", "/api2/json/config/remote/remote1", "Remote.Modify", RM, None, True),
    ("DELETE", "/api2/json/config/datastore/store1", "Datastore.Allocate", DS, None, True),
    ("POST", "/datastore/store1/forget/{snap}", "Datastore.Prune", DS, {}, False),
    ("POST", "/remotes/remote1/remove/", "Remote.Modify", RM, {}, False),
    ("POST", "/datastore/store1/remove/", "Datastore.Allocate", DS, {}, False),
]

# Lists of sync jobs answer only users with Datastore.Audit on /datastore (syncjobs/, not ours).
SYNCJOB_LISTS = [
    ("GET", "/sync-jobs/", LIST, ("Datastore.Audit", DS, "job1"), None, False),
    ("GET", "/api2/json/config/sync", LIST, ("Datastore.Audit", DS, '"job1"'), None, True),
    ("GET", "/api2/json/admin/sync", LIST, ("Datastore.Audit", DS, '"job1"'), None, True),
]


def granted(role: str, grant: str, privilege: str, path: str) -> bool:
    applies = grant == "/" or path == grant or path.startswith(grant.rstrip("/") + "/")
    return applies and privilege in ROLE_PRIVILEGES[role]


@pytest.fixture
def world(tmp_path, settings, monkeypatch, admin_user):
    from datastores.services import create_datastore
    from pbsweb.worker import create_task
    from remotes.models import Remote
    from syncjobs.models import SyncJob
    secretbox.ensure_key()
    settings.DATA_DIR = tmp_path / "data"
    settings.PBSWEB_REMOTE_TEST_TIMEOUT = 1
    # Tasks are queued on commit, and the test's transaction never commits: no broker is needed.
    store = create_datastore("store1", str(tmp_path / "store1"))
    remote = Remote.objects.create(remote_id="remote1", endpoint="http://127.0.0.1:9", bucket="bucket1",
                                   region="us-east-1", access_key="AKIA1", secret_key="s3cr3t-value")
    SyncJob.objects.create(job_id="job1", store=store, remote=remote, remote_store="store1")
    task = create_task("datastores.tasks.verify", "verify", "store1", "admin@pbs", {"store": "store1"})
    from datastores.engine.backup import run_backup
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("data")
    eng = store.engine()
    run_backup(eng, "host", "h1", [("root.tar", src)], backup_time=1767225600)
    return {"upid": task.upid, "snap": eng.list_snapshots("")[0].name}


def _user(django_user_model, role, grant, token=False):
    from pbsweb.apitokens import create_token
    from pbsweb.models import AclEntry
    user = django_user_model.objects.create_user(username=f"m-{role.lower()}@pbs", password="password-123")
    AclEntry.objects.create(user=user, path=grant, role=role)
    secret = None
    if token:
        tok, secret = create_token(user, "matrix")
        secret = f"PBSAPIToken={user.username}!matrix:{secret}"
    return user, secret


def _call(client, method, url, body, is_api, auth=None):
    extra = {"HTTP_AUTHORIZATION": auth} if auth else {}
    if method == "GET":
        return client.get(url, **extra)
    if method == "POST" and not is_api:
        return client.post(url, body or {}, **extra)
    data = json.dumps(body or {})
    return getattr(client, method.lower())(url, data, content_type="application/json", **extra)


def _check(rows, role, grant, world, call):
    problems = []
    for method, url, priv, path, body, is_api in rows:
        url = url.replace(UPID, world["upid"]).replace("{snap}", world["snap"])
        response = call(method, url, body, is_api)
        status = response.status_code
        text = response.content.decode("utf-8", "replace")
        if status >= 500 or "Traceback" in text:
            problems.append(f"{method} {url}: {status}")
            continue
        if priv == LIST:
            item_priv, item_path, marker = path
            visible = any(granted(role, grant, p, item_path) for p in item_priv.split("|"))
            if status != 200:
                problems.append(f"{method} {url}: {status}, expected 200 (a filtered list)")
            elif (marker in text) != visible:
                problems.append(f"{method} {url}: item {'hidden' if visible else 'shown'} for {role} on {grant}")
            continue
        needs = priv if isinstance(priv, list) else [(priv, path)]  # a list: every one of them
        allowed = all(granted(role, grant, p, pa) for p, pa in needs)
        if allowed and status == 403:
            problems.append(f"{method} {url}: 403, but {role} on {grant} grants {priv} on {path}")
        elif not allowed and status != 403:
            problems.append(f"{method} {url}: {status}, but {role} on {grant} lacks {priv} on {path}")
    return problems


@pytest.mark.parametrize("grant", GRANT_PATHS)
@pytest.mark.parametrize("role", sorted(ROLE_PRIVILEGES))
def test_role_matrix(role, grant, world, client, django_user_model):
    user, _ = _user(django_user_model, role, grant)
    client.force_login(user)
    problems = _check(ENDPOINTS, role, grant, world,
                      lambda m, u, b, a: _call(client, m, u, b, a))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("grant", GRANT_PATHS)
@pytest.mark.parametrize("role", ["DatastoreAdmin", "RemoteAdmin", "NoAccess"])
def test_api_token_gets_what_its_user_gets(role, grant, world, django_user_model):
    from django.test import Client
    user, auth = _user(django_user_model, role, grant, token=True)
    anonymous = Client()
    api_rows = [row for row in ENDPOINTS if row[5]]
    problems = _check(api_rows, role, grant, world,
                      lambda m, u, b, a: _call(anonymous, m, u, b, a, auth=auth))
    assert not problems, "\n".join(problems)
    # and the user's own session gets the same status codes, call by call
    session = Client()
    session.force_login(user)
    for method, url, priv, path, body, is_api in api_rows[:15]:  # the read-only calls
        url = url.replace(UPID, world["upid"])
        assert (_call(anonymous, method, url, body, True, auth=auth).status_code
                == _call(session, method, url, body, True).status_code), url


@pytest.mark.parametrize("grant", ["/datastore/store1"])
@pytest.mark.parametrize("role", ["DatastoreAdmin"])
def test_sync_job_lists_are_filtered_not_forbidden(role, grant, world, client, django_user_model):
    user, _ = _user(django_user_model, role, grant)
    client.force_login(user)
    problems = _check(SYNCJOB_LISTS, role, grant, world, lambda m, u, b, a: _call(client, m, u, b, a))
    assert not problems, "\n".join(problems)


def test_sync_job_needs_a_privilege_on_the_remote(world, client, django_user_model):
    from syncjobs.models import SyncJob
    user, _ = _user(django_user_model, "DatastoreAdmin", "/datastore/store1")
    client.force_login(user)
    response = client.post("/api2/json/config/sync", json.dumps({
        "id": "exfil", "store": "store1", "remote": "remote1", "remote-store": "elsewhere"}),
        content_type="application/json")
    assert response.status_code == 403 and not SyncJob.objects.filter(job_id="exfil").exists()


def test_nav_tree_lists_only_visible_datastores(world, client, django_user_model):
    from datastores.services import create_datastore
    create_datastore("secret-store", str(world and __import__("pathlib").Path(
        __import__("django.conf", fromlist=["settings"]).settings.DATA_DIR).parent / "secret-store"))
    user, _ = _user(django_user_model, "DatastoreReader", "/datastore/store1")
    client.force_login(user)
    html = client.get("/datastore/store1/").content.decode()
    assert "/datastore/store1/" in html and "secret-store" not in html
