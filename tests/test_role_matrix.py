"""The role matrix: users holding one role on one ACL path, against every page and API path.

ROLE_PRIVILEGES is PBS's role table (reference/pbs-internals.md §13), written out here rather
than taken from pbsweb.access, so the test checks the implementation against PBS. ENDPOINTS
says which privilege on which path each page / API call needs, as PBS documents it:
Datastore.Audit to view a store, Datastore.Modify to change its config and jobs,
Datastore.Backup/Prune/Verify/Read for those actions, Datastore.Allocate to create/remove a
store, Remote.Audit to view remotes, Remote.Modify to change them, Sys.Audit for tasks and
system config, Sys.Modify to change it, Permissions.Modify for access control.

A grant on a path applies to that path and below (propagate). "Allowed" means exactly the
status the row names (200 a page, 302 an action done and redirected, 400 an empty form refused
field by field, 409 a conflict); "denied" means 403. Lists (LIST) answer every user, filtered
to what they may see. An API token of the user that holds Admin on / gets the same answers as the
user (token ∩ user).

The routes come from the URL resolver: a route that is neither in the matrix nor in EXEMPT
(with a reason) fails test_every_route_is_in_the_matrix, which names it.
"""
import json
import re

import pytest
from django.urls import URLResolver, get_resolver, resolve

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

DS = "/datastore/store1"
RM = "/remote/remote1"
LIST = "LIST"
RESTORE = [("Remote.Read", RM), ("Sys.Modify", "/")]   # a privilege column may list several
PLAN = [("Datastore.Audit", DS), ("Remote.Audit", RM)]  # a plan lists the bucket

# (method, url, privilege or LIST, ACL path (for LIST: the path whose Audit makes the item visible),
#  body, is_api, the exact status when allowed). Destructive calls come last.
# Placeholders: {upid} a task, {snap} a snapshot, {acl} another user's ACL entry, {token} an API token.
ENDPOINTS = [
    # -- pages --------------------------------------------------------------------------------
    ("GET", "/", "Sys.Audit", "/", None, False, 200),
    ("GET", "/dashboard/running/", "Sys.Audit", "/", None, False, 200),
    ("GET", "/tasks/", "Sys.Audit", "/", None, False, 200),
    ("GET", "/tasks/{upid}/", "Sys.Audit", "/", None, False, 200),
    ("GET", "/tasks/{upid}/log/", "Sys.Audit", "/", None, False, 200),
    ("GET", "/tasks/{upid}/log/download/", "Sys.Audit", "/", None, False, 200),
    ("GET", "/tasks/{upid}/status/", "Sys.Audit", "/", None, False, 200),
    ("GET", "/access/", "Sys.Audit", "/", None, False, 200),
    ("GET", "/access/permissions/", "Sys.Audit", "/", None, False, 200),
    ("GET", "/access/tokens/", "Sys.Audit", "/", None, False, 200),
    ("GET", "/traffic-control/", "Sys.Audit", "/", None, False, 200),
    ("GET", "/notifications/", "Sys.Audit", "/", None, False, 200),
    ("GET", "/notifications/n1/", "Sys.Audit", "/", None, False, 200),
    # the overview and the navigation tree show the stores a user may audit or back up to (PBS)
    ("GET", "/datastore/", LIST, ("Datastore.Audit|Datastore.Backup", DS, "/datastore/store1/"), None, False, 200),
    ("GET", "/datastore/add/", "Datastore.Audit", "/", None, False, 200),
    ("GET", "/datastore/store1/", "Datastore.Audit", DS, None, False, 200),
    ("GET", "/datastore/store1/content/", "Datastore.Audit", DS, None, False, 200),
    ("GET", "/datastore/store1/prune-gc/", "Datastore.Audit", DS, None, False, 200),
    ("GET", "/datastore/store1/prune-simulate/?keep_last=1", "Datastore.Audit", DS, None, False, 200),
    ("GET", "/datastore/store1/prune-group/?group=host/h1", "Datastore.Audit", DS, None, False, 200),
    ("GET", "/datastore/store1/verify-jobs/", "Datastore.Audit", DS, None, False, 200),
    ("GET", "/datastore/store1/options/", "Datastore.Audit", DS, None, False, 200),
    ("GET", "/datastore/store1/encryption/", "Datastore.Audit", DS, None, False, 200),
    ("GET", "/datastore/store1/sync-jobs/", "Datastore.Audit", DS, None, False, 200),
    # the store has no key: allowed users get the 404 that says so
    ("GET", "/datastore/store1/encryption/download/", "Datastore.Modify", DS, None, False, 404),
    ("GET", "/datastore/store1/encryption/paperkey/", "Datastore.Modify", DS, None, False, 404),
    ("GET", "/remotes/", LIST, ("Remote.Audit", RM, "/remotes/remote1/"), None, False, 200),
    ("GET", "/remotes/remote1/", "Remote.Audit", RM, None, False, 200),
    ("GET", "/remotes/remote1/content/", "Remote.Audit", RM, None, False, 200),
    ("GET", "/remotes/add/", "Remote.Modify", "/remote", None, False, 200),
    ("GET", "/remotes/remote1/edit/", "Remote.Modify", RM, None, False, 200),
    ("GET", "/remotes/remote1/recover/", "Remote.Modify", RM, None, False, 200),
    ("GET", "/sync-jobs/job1/plan/", PLAN, None, None, False, 200),
    ("GET", "/api2/json/admin/sync/job1/plan", PLAN, None, None, True, 400),  # the bucket is unreachable
    ("GET", "/sync-jobs/job1/prune-simulate/", PLAN, None, None, False, 200),  # reads the inventory only
    ("GET", "/api2/json/admin/sync/job1/prune-simulate", PLAN, None, None, True, 200),
    # restoring writes to this server: Remote.Read on the remote and Sys.Modify on /
    ("GET", "/remotes/remote1/content/restore/", RESTORE, None, None, False, 404),  # no snapshot named
    ("GET", "/drills/", "Remote.Audit", "/remote", None, False, 200),
    ("GET", "/drills/add/", "Remote.Modify", "/remote", None, False, 200),
    ("GET", "/drills/drill1/edit/", "Remote.Modify", RM, None, False, 200),
    ("GET", "/drills/drill1/log/", "Remote.Audit", RM, None, False, 302),  # no run yet: to the list
    ("GET", "/sync-jobs/add/?store=store1", "Datastore.Modify", DS, None, False, 200),
    ("GET", "/sync-jobs/job1/edit/", "Datastore.Modify", DS, None, False, 200),
    ("GET", "/sync-jobs/job1/log/", "Datastore.Audit", DS, None, False, 302),
    ("GET", "/sync-jobs/job1/run-as-of/", "Datastore.Modify", DS, None, False, 200),
    ("GET", "/traffic-control/add/", "Sys.Modify", "/", None, False, 200),
    ("GET", "/traffic-control/rule1/edit/", "Sys.Modify", "/", None, False, 200),
    ("POST", "/datastore/create/", "Datastore.Allocate", "/datastore", {}, False, 400),
    ("POST", "/datastore/store1/options/save/", "Datastore.Modify", DS, {"schedule": "daily"}, False, 302),
    ("POST", "/datastore/store1/prune-jobs/add/", "Datastore.Modify", DS, {}, False, 400),
    ("POST", "/datastore/store1/prune-jobs/pj1/run/", "Datastore.Prune", DS, {}, False, 302),
    ("POST", "/datastore/store1/verify-jobs/add/", "Datastore.Modify", DS, {}, False, 400),
    ("POST", "/datastore/store1/verify-jobs/vj1/run/", "Datastore.Verify", DS, {}, False, 302),
    ("POST", "/datastore/store1/encryption/generate/", "Datastore.Modify", DS, {}, False, 400),
    ("POST", "/datastore/store1/gc/start/", "Datastore.Modify", DS, {}, False, 302),
    ("POST", "/datastore/store1/prune/", "Datastore.Prune", DS, {"keep_last": "1"}, False, 302),
    ("POST", "/datastore/store1/verify/", "Datastore.Verify", DS, {}, False, 302),
    # one snapshot: reading its files needs Datastore.Read, its notes/protection Datastore.Modify
    ("GET", "/datastore/store1/notes/{snap}", "Datastore.Audit", DS, None, False, 200),
    ("GET", "/datastore/store1/download/{snap}?file=index.json.blob", "Datastore.Read", DS, None, False, 200),
    ("GET", "/datastore/store1/download-file/{snap}?archive=root.tar&path=f.txt", "Datastore.Read", DS,
     None, False, 200),
    ("GET", "/datastore/store1/browse/{snap}", "Datastore.Read", DS, None, False, 200),
    ("POST", "/datastore/store1/catalog-rebuild/{snap}", "Datastore.Read", DS, {}, False, 302),
    ("POST", "/datastore/store1/notes-save/{snap}", "Datastore.Modify", DS, {"notes": "n"}, False, 302),
    ("POST", "/datastore/store1/protect/{snap}", "Datastore.Modify", DS, {"protected": "false"}, False, 302),
    ("POST", "/datastore/store1/verify-snapshot/{snap}", "Datastore.Verify", DS, {}, False, 302),
    ("POST", "/remotes/add/", "Remote.Modify", "/remote", {}, False, 400),
    ("POST", "/remotes/add/test/", "Remote.Modify", "/remote", {}, False, 200),
    ("POST", "/remotes/remote1/edit/", "Remote.Modify", RM, {}, False, 400),
    ("POST", "/remotes/remote1/edit/test/", "Remote.Modify", RM, {}, False, 200),
    ("POST", "/remotes/remote1/test/", "Remote.Modify", RM, {}, False, 302),
    ("POST", "/remotes/remote1/recover/", "Remote.Modify", RM, {}, False, 400),
    ("POST", "/remotes/remote1/content/restore/", RESTORE, None, {}, False, 400),
    ("POST", "/drills/add/", "Remote.Modify", "/remote", {}, False, 400),
    ("POST", "/drills/drill1/edit/", "Remote.Modify", RM, {}, False, 400),
    ("POST", "/drills/drill1/run/", "Remote.Read", RM, {}, False, 302),
    ("POST", "/sync-jobs/add/", "Datastore.Modify", DS, {"store": "store1"}, False, 400),
    ("POST", "/sync-jobs/job1/edit/", "Datastore.Modify", DS, {}, False, 400),
    ("POST", "/sync-jobs/job1/run/", "Datastore.Modify", DS, {}, False, 302),
    ("POST", "/sync-jobs/job1/run-as-of/", "Datastore.Modify", DS, {}, False, 400),  # as_of required
    ("POST", "/traffic-control/add/", "Sys.Modify", "/", {}, False, 400),
    ("POST", "/traffic-control/rule1/edit/", "Sys.Modify", "/", {}, False, 400),
    ("POST", "/notifications/add/", "Sys.Modify", "/", {}, False, 400),
    ("POST", "/notifications/n1/edit/", "Sys.Modify", "/", {}, False, 400),
    ("POST", "/notifications/n1/test/", "Sys.Modify", "/", {}, False, 200),
    ("POST", "/access/users/add/", "Permissions.Modify", "/", {}, False, 400),
    ("POST", "/access/permissions/add/", "Permissions.Modify", "/", {}, False, 400),
    ("POST", "/access/tokens/add/", "Permissions.Modify", "/", {}, False, 400),
    ("POST", "/tasks/{upid}/stop/", "Sys.Modify", "/", {}, False, 302),
    # -- API ----------------------------------------------------------------------------------
    ("GET", "/api2/json/admin/datastore", LIST, ("Datastore.Audit|Datastore.Backup", DS, '"store1"'), None, True,
     200),
    ("GET", "/api2/json/config/datastore", LIST, ("Datastore.Audit", DS, '"store1"'), None, True, 200),
    ("GET", "/api2/json/config/remote", LIST, ("Remote.Audit", RM, '"remote1"'), None, True, 200),
    ("GET", "/api2/json/admin/datastore/store1/snapshots", "Datastore.Audit", DS, None, True, 200),
    ("GET", "/api2/json/admin/datastore/store1/status", "Datastore.Audit", DS, None, True, 200),
    ("GET", "/api2/json/admin/datastore/store1/groups", "Datastore.Audit", DS, None, True, 200),
    ("GET", "/api2/json/admin/datastore/store1/namespace", "Datastore.Audit", DS, None, True, 200),
    ("GET", "/api2/json/admin/datastore/store1/gc", "Datastore.Audit", DS, None, True, 200),
    ("GET", "/api2/json/config/datastore/store1", "Datastore.Audit", DS, None, True, 200),
    ("GET", "/api2/json/config/remote/remote1", "Remote.Audit", RM, None, True, 200),
    ("GET", "/api2/json/config/sync/job1", "Datastore.Audit", DS, None, True, 200),
    ("GET", "/api2/json/config/traffic-control", "Sys.Audit", "/", None, True, 200),
    ("GET", "/api2/json/config/traffic-control/rule1", "Sys.Audit", "/", None, True, 200),
    ("GET", "/api2/json/nodes/localhost/tasks", "Sys.Audit", "/", None, True, 200),
    ("GET", "/api2/json/nodes/localhost/tasks/{upid}", "Sys.Audit", "/", None, True, 200),
    ("GET", "/api2/json/nodes/localhost/tasks/{upid}/log", "Sys.Audit", "/", None, True, 200),
    ("GET", "/api2/json/nodes/localhost/tasks/{upid}/status", "Sys.Audit", "/", None, True, 200),
    ("POST", "/api2/json/admin/datastore/store1/gc", "Datastore.Modify", DS, {}, True, 200),
    ("POST", "/api2/json/admin/datastore/store1/verify", "Datastore.Verify", DS, {}, True, 200),
    ("POST", "/api2/json/admin/datastore/store1/prune", "Datastore.Prune", DS, {"keep-last": 1, "dry-run": True},
     True, 200),
    ("POST", "/api2/json/admin/datastore/store1/prune-datastore", "Datastore.Prune", DS,
     {"keep-last": 1, "dry-run": True}, True, 200),
    ("POST", "/api2/json/config/datastore", "Datastore.Allocate", "/datastore", {"name": "x"}, True, 400),
    ("POST", "/api2/json/config/remote", "Remote.Modify", "/remote", {"name": "x"}, True, 400),
    ("PUT", "/api2/json/config/remote/remote1", "Remote.Modify", RM, {"comment": "changed"}, True, 200),
    ("POST", "/api2/json/config/remote/remote1/test", "Remote.Modify", RM, {}, True, 200),
    ("POST", "/api2/json/config/sync", "Datastore.Modify", DS, {"store": "store1"}, True, 400),
    # an edit is checked as the job it results in: job1 pushes store1 to remote1 (issue 16 #2)
    ("PUT", "/api2/json/config/sync/job1", [("Datastore.Modify", DS), ("Remote.DatastoreBackup", RM)], None,
     {"comment": "changed"}, True, 200),
    ("POST", "/api2/json/admin/sync/job1/run", "Datastore.Modify", DS, {}, True, 200),
    ("POST", "/api2/json/config/traffic-control", "Sys.Modify", "/", {}, True, 400),
    ("PUT", "/api2/json/config/traffic-control/rule1", "Sys.Modify", "/", {"comment": "changed"}, True, 200),
    ("DELETE", "/api2/json/nodes/localhost/tasks/{upid}", "Sys.Modify", "/", None, True, 200),
    ("DELETE", "/api2/json/admin/datastore/store1/snapshots", "Datastore.Prune", DS, None, True, 400),
    # destructive last: job1 uses store1 and remote1, so these are refused (409/message), not done
    ("DELETE", "/api2/json/config/remote/remote1", "Remote.Modify", RM, None, True, 409),
    ("DELETE", "/api2/json/config/datastore/store1", "Datastore.Allocate", DS, None, True, 409),
    ("DELETE", "/api2/json/config/traffic-control/rule1", "Sys.Modify", "/", None, True, 200),
    ("POST", "/traffic-control/rule2/remove/", "Sys.Modify", "/", {}, False, 302),
    ("POST", "/notifications/n1/remove/", "Sys.Modify", "/", {}, False, 302),
    ("POST", "/drills/drill1/remove/", "Remote.Modify", RM, {}, False, 302),
    ("POST", "/datastore/store1/prune-jobs/pj1/remove/", "Datastore.Modify", DS, {}, False, 302),
    ("POST", "/datastore/store1/verify-jobs/vj1/remove/", "Datastore.Modify", DS, {}, False, 302),
    ("POST", "/access/permissions/{acl}/remove/", "Permissions.Modify", "/", {}, False, 302),
    ("POST", "/access/tokens/{token}/remove/", "Permissions.Modify", "/", {}, False, 302),
    ("POST", "/access/users/victim@pbs/remove/", "Permissions.Modify", "/", {}, False, 302),
    ("POST", "/datastore/store1/forget/{snap}", "Datastore.Prune", DS, {}, False, 302),
    ("POST", "/sync-jobs/job1/remove/", "Datastore.Modify", DS, {}, False, 302),
    ("POST", "/remotes/remote1/remove/", "Remote.Modify", RM, {}, False, 302),
    ("POST", "/datastore/store1/remove/", "Datastore.Allocate", DS, {}, False, 302),
]

# Routes the matrix does not call, and why. Every other route of the URL resolver must be in
# ENDPOINTS or SYNCJOB_LISTS (test_every_route_is_in_the_matrix).
# Exempt too, all_protocol_routes(): the backup/reader protocol (docs/PROTOCOL.md) takes no session
# cookie but a token or password on every request; its privileges and group ownership are tested in
# tests/test_client_access.py.
EXEMPT = {
    "login/": "public: the login form (tests/test_login.py)",
    "logout/": "ends the session of whoever calls it; needs no privilege",
}

# Lists of sync jobs answer only users with Datastore.Audit on /datastore (syncjobs/, not ours).
SYNCJOB_LISTS = [
    ("GET", "/sync-jobs/", LIST, ("Datastore.Audit", DS, "job1"), None, False, 200),
    ("GET", "/api2/json/config/sync", LIST, ("Datastore.Audit", DS, '"job1"'), None, True, 200),
    ("GET", "/api2/json/admin/sync", LIST, ("Datastore.Audit", DS, '"job1"'), None, True, 200),
]


def all_protocol_routes() -> list[str]:
    return [r for r in all_routes() if re.match(r"api2/json/\^?\(?(\?:)?(backup|reader)", r)]


def all_routes(patterns=None, prefix="") -> list[str]:
    """Every route of the URL resolver, as Django spells it (e.g. "remotes/<str:remote>/")."""
    out = []
    for p in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(p, URLResolver):
            out += all_routes(p.url_patterns, prefix + str(p.pattern))
        else:
            out.append(prefix + str(p.pattern))
    return out


def test_every_route_is_in_the_matrix():
    sample = {"upid": "UPID:n:1:1:0:1:backup:x:u@pbs:", "snap": "host/h1/2026-01-01T00:00:00Z",
              "acl": "1", "token": "1"}
    covered = {resolve(_fill(url, sample).split("?")[0]).route for _, url, *_ in ENDPOINTS + SYNCJOB_LISTS}
    missing = sorted(set(all_routes()) - covered - set(EXEMPT) - set(all_protocol_routes()))
    assert not missing, (
        "routes with no row in tests/test_role_matrix.py (add each to ENDPOINTS with its privilege and "
        "expected status, or to EXEMPT with a reason):\n  " + "\n  ".join(missing))
    stale = sorted(set(EXEMPT) - set(all_routes()))
    assert not stale, f"EXEMPT names routes that do not exist: {stale}"


def granted(role: str, grant: str, privilege: str, path: str) -> bool:
    applies = grant == "/" or path == grant or path.startswith(grant.rstrip("/") + "/")
    return applies and privilege in ROLE_PRIVILEGES[role]


@pytest.fixture
def world(tmp_path, settings, monkeypatch, admin_user, django_user_model):
    from datastores.models import PruneJob, VerifyJob
    from datastores.services import create_datastore
    from pbsweb.apitokens import create_token
    from pbsweb.models import AclEntry, NotificationTarget
    from syncjobs.models import DrillJob, TrafficControlRule
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
    DrillJob.objects.create(job_id="drill1", remote=remote)
    PruneJob.objects.create(job_id="pj1", store=store, keep_last=1)
    VerifyJob.objects.create(job_id="vj1", store=store)
    TrafficControlRule.objects.create(name="rule1", rate_out=1 << 20)
    TrafficControlRule.objects.create(name="rule2", rate_out=1 << 20)
    NotificationTarget.objects.create(name="n1", kind=NotificationTarget.WEBHOOK, address="http://127.0.0.1:9/hook")
    victim = django_user_model.objects.create_user(username="victim@pbs", password="password-123")
    acl = AclEntry.objects.create(user=victim, path="/datastore/store1", role="Audit")
    token, _ = create_token(admin_user, "victim-token")
    task = create_task("datastores.tasks.verify", "verify", "store1", "admin@pbs", {"store": "store1"})
    from datastores.engine.backup import run_backup
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("data")
    eng = store.engine()
    run_backup(eng, "host", "h1", [("root.tar", src)], backup_time=1767225600)
    return {"upid": task.upid, "snap": eng.list_snapshots("")[0].name, "acl": str(acl.id), "token": str(token.id)}


def _fill(url, world):
    for name in ("upid", "snap", "acl", "token"):
        url = url.replace("{%s}" % name, world[name])
    return url


def _user(django_user_model, role, grant, token=False):
    from pbsweb.apitokens import create_token
    from pbsweb.models import AclEntry
    user = django_user_model.objects.create_user(username=f"m-{role.lower()}@pbs", password="password-123")
    AclEntry.objects.create(user=user, path=grant, role=role)
    secret = None
    if token:
        # Admin on / for the token: it then holds exactly its user's rights (token ∩ user)
        tok, secret = create_token(user, "matrix", role="Admin", path="/")
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
    for method, url, priv, path, body, is_api, ok in rows:
        url = _fill(url, world)
        response = call(method, url, body, is_api)
        status = response.status_code
        body_bytes = b"".join(response.streaming_content) if response.streaming else response.content
        text = body_bytes.decode("utf-8", "replace")
        if status >= 500 or "Traceback" in text:
            problems.append(f"{method} {url}: {status}")
            continue
        if priv == LIST:
            item_priv, item_path, marker = path
            visible = any(granted(role, grant, p, item_path) for p in item_priv.split("|"))
            if status != ok:
                problems.append(f"{method} {url}: {status}, expected {ok} (a filtered list)")
            elif (marker in text) != visible:
                problems.append(f"{method} {url}: item {'hidden' if visible else 'shown'} for {role} on {grant}")
            continue
        needs = priv if isinstance(priv, list) else [(priv, path)]  # a list: every one of them
        allowed = all(granted(role, grant, p, pa) for p, pa in needs)
        if allowed and status != ok:
            problems.append(f"{method} {url}: {status}, expected {ok}: {role} on {grant} grants {needs}"
                            + (f" ({text[:120]!r})" if status == 403 else ""))
        elif not allowed and status != 403:
            problems.append(f"{method} {url}: {status}, but {role} on {grant} lacks one of {needs}")
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
    for method, url, priv, path, body, is_api, ok in api_rows[:17]:  # the read-only calls
        assert method == "GET"
        url = _fill(url, world)
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
