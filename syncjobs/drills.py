"""Restore drills in the console: the drill itself is syncjobs/engine/drill.py
(run by the `drill` task in syncjobs/tasks.py); `drill_status(remote)` is what
the dashboard and the remote pages show."""
from __future__ import annotations

from django.utils import timezone

from remotes.models import Remote
from syncjobs.engine.drill import DrillResult, drill_prefix, pick_snapshots
from syncjobs.models import DrillRun

__all__ = ["DrillResult", "drill_prefix", "drill_status", "pick_snapshots", "remotes_never_passed"]


# -- status for pages and the dashboard (Django) ---------------------------------------------

def drill_status(remote) -> dict | None:
    """The last restore drill of a remote (a Remote or its ID), or None if it never ran one.

    {"ok": bool, "time": datetime, "snapshots": int, "message": str, "bytes": int,
     "task_upid": str, "last_ok_time": datetime|None, "ever_passed": bool,
     "text": "last verified restore: <time>, <n> snapshots, OK" | "restore drill FAILED ..."}
    """

    qs = DrillRun.objects.filter(**({"remote__remote_id": remote} if isinstance(remote, str) else {"remote": remote}))
    last = qs.first()
    if last is None:
        return None
    good = last if last.ok else qs.filter(ok=True).first()
    when = timezone.localtime(last.time).strftime("%Y-%m-%d %H:%M:%S")
    if last.ok:
        text = f"last verified restore: {when}, {last.snapshots} snapshots, OK"
    else:
        text = f"restore drill FAILED {when}: {last.message}"
        if good:
            text += f" (last verified restore: {timezone.localtime(good.time):%Y-%m-%d %H:%M:%S})"
    return {"ok": last.ok, "time": last.time, "snapshots": last.snapshots, "message": last.message,
            "bytes": last.bytes_downloaded, "task_upid": last.task_upid, "remote_store": last.remote_store,
            "last_ok_time": good.time if good else None, "ever_passed": good is not None, "text": text}


def remotes_never_passed() -> list[str]:
    """IDs of remotes that have never passed a restore drill (flag them: the copy is unproven)."""
    passed = set(DrillRun.objects.filter(ok=True).values_list("remote_id", flat=True))
    return [r.remote_id for r in Remote.objects.all() if r.pk not in passed]
