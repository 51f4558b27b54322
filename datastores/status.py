"""Summary facts about a datastore: filesystem usage, counts, last GC status."""
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from datastores.engine.errors import DatastoreError

GC_STATUS_FILE = ".gc-status"


def read_gc_file(path) -> dict:
    try:
        doc = json.loads((Path(path) / GC_STATUS_FILE).read_text())
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def _pick(doc, *names):
    for n in names:
        if n in doc and doc[n] is not None:
            return doc[n]
    return None


def _epoch_iso(value):
    if isinstance(value, (int, float)) and value > 0:
        return datetime.fromtimestamp(value, tz=timezone.utc).isoformat(timespec="seconds")
    return value


def gc_status(cfg) -> dict:
    """Last GC of a datastore as PBS shows it (the engine writes .gc-status; the task gives times)."""
    doc = read_gc_file(cfg.path)
    task = cfg.last_task
    index_bytes = _pick(doc, "index-data-bytes", "index_data_bytes")
    disk_bytes = _pick(doc, "disk-bytes", "disk_bytes")
    dedup = _pick(doc, "dedup-factor", "dedup_factor")
    if dedup is None and index_bytes and disk_bytes:
        dedup = round(index_bytes / disk_bytes, 2)
    return {
        "schedule": cfg.schedule or "none",
        "last-run": (task.starttime.isoformat(timespec="seconds") if task else
                     _epoch_iso(_pick(doc, "start", "last-run", "time"))),
        "duration": round(task.duration.total_seconds(), 1) if task and task.duration else None,
        "status": ("running" if task.running else task.status) if task else ("OK" if doc else None),
        "upid": task.upid if task else _pick(doc, "upid"),
        "next-run": cfg.next_run.isoformat() if cfg.next_run else None,
        "removed-bytes": _pick(doc, "removed-bytes", "removed_bytes"),
        "removed-chunks": _pick(doc, "removed-chunks", "removed_chunks"),
        "pending-bytes": _pick(doc, "pending-bytes", "pending_bytes"),
        "pending-chunks": _pick(doc, "pending-chunks", "pending_chunks"),
        "index-data-bytes": index_bytes,
        "disk-bytes": disk_bytes,
        "disk-chunks": _pick(doc, "disk-chunks", "disk_chunks"),
        "dedup-factor": dedup,
    }


def usage(path) -> dict:
    try:
        u = shutil.disk_usage(path)
    except OSError:
        return {"total": None, "used": None, "avail": None, "percent": None}
    return {"total": u.total, "used": u.used, "avail": u.free,
            "percent": round(100 * u.used / u.total, 1) if u.total else None}


def counts(eng) -> dict:
    try:
        refs = eng.list_snapshots("")
    except DatastoreError:
        return {"snapshots": 0, "groups": 0, "namespaces": 0}
    groups = {(r.ns, r.backup_type, r.backup_id) for r in refs}
    by_type = {}
    for t in ("vm", "ct", "host"):
        by_type[t] = {"groups": len({g for g in groups if g[1] == t}),
                      "snapshots": sum(1 for r in refs if r.backup_type == t)}
    return {"snapshots": len(refs), "groups": len(groups), "namespaces": len(eng.list_namespaces()),
            "by_type": by_type}
