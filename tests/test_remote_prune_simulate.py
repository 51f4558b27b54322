"""The prune simulator of a push job's own remote retention (issue 12, docs/DESIGN.md §3 invariant 8):
`sync-job prune-simulate`, the sync job dialog's "Simulate retention" and the API show which of the
bucket's snapshots (from the prefix's inventory: no request) the keep options keep and remove, each
group as PBS prunes it -- the marks of the one prune engine, which the push removes by."""
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from datastores.engine.prune import KeepOptions, PruneItem, compute_prune
from datastores.models import Datastore
from syncjobs.engine.scope import MANIFEST_NAME
from syncjobs.models import SyncJob
from syncjobs.tasks import open_inventory
from tests.test_restore_fresh_install import cli_error, make_remote, run_cli

START = datetime(2026, 6, 1, 2, 0, tzinfo=timezone.utc)
WEB = [START + timedelta(days=i) for i in range(100)]            # 2026-06-01 .. 2026-09-08, one a day
CT = [datetime(2026, 9, 8, h, 30, tzinfo=timezone.utc) for h in (1, 9, 17)]  # three on one day


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# keep-daily 7 keep-monthly 3, by hand: the last 7 days of web01, then the newest of each earlier
# month (September already has a daily one); ct/100 has one day: its newest
EXPECTED_KEPT = ({f"host/web01/2026-09-0{d}T02:00:00Z" for d in range(2, 9)}
                 | {"host/web01/2026-08-31T02:00:00Z", "host/web01/2026-07-31T02:00:00Z",
                    "host/web01/2026-06-30T02:00:00Z", "ct/100/2026-09-08T17:30:00Z"})


@pytest.fixture
def bucket_inventory(tmp_path, db):
    """A push job with keep-daily 7 keep-monthly 3 whose prefix inventory lists 103 snapshots."""
    remote = make_remote("http://127.0.0.1:9", f"sim-{uuid.uuid4().hex[:12]}")  # never contacted: the simulator reads the inventory
    Datastore.objects.create(name="store1", path=str(tmp_path / "ds"))
    run_cli("sync-job", "create", "job1", "--store", "store1", "--remote", "s3-test", "--remote-store", "backups",
            "--keep-daily", "7", "--keep-monthly", "3")
    job = SyncJob.objects.get(job_id="job1")
    inv = open_inventory(remote, remote.config(), "backups")
    try:
        for group, times in (("host/web01", WEB), ("ct/100", CT)):
            for t in times:
                inv.add_file(f"{group}/{stamp(t)}/{MANIFEST_NAME}", 500, None, t.timestamp())
                inv.add_file(f"{group}/{stamp(t)}/root.pxar.didx", 900, None, t.timestamp())
        inv.add_file(f"host/web01/{stamp(START + timedelta(hours=1))}/root.pxar.didx", 900, None, 0)  # unfinished
        inv.set_meta("reconciled_at", str(START.timestamp()))
    finally:
        inv.close()
    return job


def engine_marks(keep: KeepOptions) -> dict[str, str]:
    out = {}
    for group, times in (("host/web01", WEB), ("ct/100", CT)):
        items = [PruneItem(f"{group}/{stamp(t)}", int(t.timestamp())) for t in times]
        out.update({item.key: mark for item, mark in compute_prune(items, keep)})
    return out


@pytest.mark.django_db
def test_cli_marks_match_the_engine(bucket_inventory):
    data = json.loads(run_cli("sync-job", "prune-simulate", "job1", "--output-format", "json"))
    marks = {s["snapshot"]: s["mark"] for s in data["snapshots"]}
    assert len(marks) == 103  # an upload without its manifest is no snapshot
    assert marks == engine_marks(KeepOptions(keep_daily=7, keep_monthly=3))
    assert {name for name, mark in marks.items() if mark == "keep"} == EXPECTED_KEPT
    assert data["keep"] == {"keep-daily": 7, "keep-monthly": 3} and (data["kept"], data["removed"]) == (11, 92)
    assert all(s["keep"] == (s["mark"] != "remove") for s in data["snapshots"])

    # options given instead of the job's; the text table
    out = run_cli("sync-job", "prune-simulate", "job1", "--keep-last", "2", "--keep-weekly", "4")
    assert "keep options --keep-last 2 --keep-weekly 4: 8 kept, 95 removed" in out
    table = {line.split("│")[2].strip(): line.split("│")[3].strip() for line in out.splitlines()
             if line.startswith("│") and "/20" in line}
    assert table == engine_marks(KeepOptions(keep_last=2, keep_weekly=4))
    assert str(cli_error("sync-job", "prune-simulate", "job1", "--keep-daily", "-1")) \
        .startswith("--keep-daily: expected a whole number >= 0")


@pytest.mark.django_db
def test_console_and_api(bucket_inventory, admin_client, tmp_path):
    html = admin_client.get("/sync-jobs/job1/edit/", HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-get="/sync-jobs/job1/prune-simulate/"' in html and "Simulate retention" in html
    # the job's own options
    html = admin_client.get("/sync-jobs/job1/prune-simulate/", HTTP_HX_REQUEST="true").content.decode()
    assert "11 kept, 92 removed" in html
    assert html.count('class="sim-keep"') == 11 and html.count('class="sim-remove"') == 92
    for name in EXPECTED_KEPT:
        row = html.split(f'<td class="mono">{name}</td>')[1].split("</tr>")[0]
        assert ">keep<" in row, name
    # the dialog's options (as typed, blanks included)
    html = admin_client.get("/sync-jobs/job1/prune-simulate/", {"keep_last": "3", "keep_daily": "", "keep_monthly": ""},
                            HTTP_HX_REQUEST="true").content.decode()
    assert "6 kept, 97 removed" in html  # per group
    # bad input names the field, 400
    response = admin_client.get("/sync-jobs/job1/prune-simulate/", {"keep_daily": "-4"})
    assert response.status_code == 400 and "Keep Daily: Ensure this value is greater than or equal to 0." \
        in response.content.decode()
    # the API
    data = admin_client.get("/api2/json/admin/sync/job1/prune-simulate", {"keep-daily": "7", "keep-monthly": "3"}).json()
    assert {s["snapshot"] for s in data["data"]["snapshots"] if s["keep"]} == EXPECTED_KEPT
    response = admin_client.get("/api2/json/admin/sync/job1/prune-simulate", {"keep-last": "x"})
    assert response.status_code == 400 and "keep-last" in response.content.decode()
    # a pull job has no remote retention
    run_cli("sync-job", "create", "pull1", "--direction", "pull", "--store", "store1", "--remote", "s3-test",
            "--remote-store", "backups")
    assert str(cli_error("sync-job", "prune-simulate", "pull1")).startswith("id: sync job 'pull1' pulls")
    response = admin_client.get("/sync-jobs/pull1/prune-simulate/")
    assert response.status_code == 400 and "pulls: a remote retention prunes" in response.content.decode()
