"""Datastores as the JSON API answers them (PBS field names)."""
from datastores import status as ds_status


def config_json(cfg) -> dict:
    return {"name": cfg.name, "path": cfg.path, "comment": cfg.comment or None, "gc-schedule": cfg.schedule or None,
            "verify-new": cfg.verify_new, "key-fingerprint": cfg.key_fingerprint or None}


def usage_json(cfg) -> dict:
    u = ds_status.usage(cfg.path)
    return {"store": cfg.name, "comment": cfg.comment or None, "total": u["total"], "used": u["used"],
            "avail": u["avail"]}


def snapshot_json(eng, ref, info: dict) -> dict:
    """One snapshot; `info` is services.snapshot_info(eng, ref)."""
    entry = {"backup-type": ref.backup_type, "backup-id": ref.backup_id, "backup-time": ref.time,
             "files": [{"filename": f["filename"], "size": f["size"], "crypt-mode": f.get("crypt-mode")}
                       for f in info.get("file_entries", [])],
             "size": info["size"], "protected": ref.protected, "comment": info["comment"] or None,
             "verification": info["verification"], "fingerprint": info["fingerprint"],
             "owner": eng.get_owner(ref.ns, ref.backup_type, ref.backup_id)}
    if ref.ns:
        entry["ns"] = ref.ns
    if not ref.finished:
        entry["unfinished"] = True
    return entry


def prune_item_json(ref, mark: str) -> dict:
    return {"backup-type": ref.backup_type, "backup-id": ref.backup_id, "backup-time": ref.time,
            "keep": mark != "remove", "protected": mark == "protected", **({"ns": ref.ns} if ref.ns else {})}
