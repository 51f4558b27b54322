"""What a remote's bucket holds: store prefixes, namespaces, groups, snapshots.

Read from the bucket's listing, markers and manifests only (no chunk is
downloaded). Used by Remote → Content, `remote-content` and the drills.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from datastores.engine.errors import DatastoreError
from syncjobs.engine.bucket import Bucket, SyncError
from syncjobs.engine.pull import RemoteSnapshot, _list_snapshot_objects, _remote_snapshot
from syncjobs.engine.scope import MANIFEST_NAME, MARKER_NAME, Scope, normalize_ns, parse_snapshot_dir


@dataclass
class StorePrefix:
    prefix: str
    uuid: str = ""


@dataclass
class Listing:
    snapshots: list[RemoteSnapshot] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)   # "<key>: <error>" of manifests that fail
    unfinished: list[str] = field(default_factory=list)   # snapshot dirs without a manifest

    def namespaces(self) -> list[str]:
        out = {""}
        for s in self.snapshots:
            parts = s.ns.split("/") if s.ns else []
            for i in range(len(parts)):
                out.add("/".join(parts[:i + 1]))
        return sorted(out)

    def groups(self) -> list[dict]:
        groups: dict[tuple, dict] = {}
        for s in self.snapshots:
            g = groups.setdefault((s.ns, s.backup_type, s.backup_id), {
                "ns": s.ns, "type": s.backup_type, "id": s.backup_id, "snapshots": [], "size": 0})
            g["snapshots"].append(s)
            g["size"] += s.size
        out = []
        for g in groups.values():
            g["snapshots"].sort(key=lambda s: s.time, reverse=True)
            g["last"] = g["snapshots"][0]
            g["name"] = f"{g['type']}/{g['id']}"
            out.append(g)
        out.sort(key=lambda g: (g["ns"], g["type"], g["id"]))
        return out


def make_bucket(remote, client, prefix: str = "") -> Bucket:
    cfg = remote.config()
    return Bucket(client, cfg.bucket, prefix, skip_if_none_match=cfg.skip_if_none_match,
                  delete_via_delete_object=cfg.delete_via_delete_object)


def store_prefixes(bucket: Bucket) -> list[StorePrefix]:
    """Top-level prefixes of the bucket that hold a datastore marker (one LIST, one GET each)."""
    dirs, objs = bucket.list_dirs("")
    out = []
    if any(o.rel == MARKER_NAME for o in objs):
        out.append(StorePrefix("", _marker_uuid(bucket, MARKER_NAME)))
    for d in dirs:
        name = d.rstrip("/")
        if not name or name.startswith("."):
            continue
        data = bucket.get_if_exists(f"{name}/{MARKER_NAME}")
        if data is None:
            continue
        out.append(StorePrefix(name, _uuid_of(data)))
    return out


def _marker_uuid(bucket, rel) -> str:
    try:
        return _uuid_of(bucket.get(rel))
    except SyncError:
        return ""


def _uuid_of(data: bytes) -> str:
    try:
        doc = json.loads(data)
        return str(doc.get("uuid", "")) if isinstance(doc, dict) else ""
    except ValueError:
        return ""


def list_snapshots(bucket: Bucket, ns: str = "", max_depth: int | None = None) -> Listing:
    """Every finished snapshot under the prefix (one GET per manifest); a
    manifest that cannot be read is reported by key, not skipped silently."""
    scope = Scope(normalize_ns(ns), max_depth, ())
    out = Listing()
    for rd, objs in _list_snapshot_objects(bucket, scope).items():
        snap = parse_snapshot_dir(rd)
        if snap is None or not scope.contains_path(snap):
            continue
        if MANIFEST_NAME not in objs:
            out.unfinished.append(rd)
            continue
        rel = f"{rd}/{MANIFEST_NAME}"
        try:
            out.snapshots.append(_remote_snapshot(rd, objs, bucket.get(rel), bucket.key(rel)))
        except (SyncError, DatastoreError) as e:
            msg = str(e)
            key = bucket.key(rel)
            out.unreadable.append(msg if key in msg else f"{key}: {msg}")
    out.snapshots.sort(key=lambda s: (s.ns, s.backup_type, s.backup_id, s.time))
    return out


def find_snapshot(listing: Listing, name: str, ns: str = "") -> RemoteSnapshot | None:
    """A snapshot by `type/id/time` (with --ns) or its full rel dir `ns/a/type/id/time`."""
    name = name.strip("/")
    for s in listing.snapshots:
        if s.rel_dir == name or (s.ns == normalize_ns(ns) and s.name == name):
            return s
    return None
