"""What a remote's bucket holds: store prefixes, namespaces, groups, snapshots.

Read from the bucket's listing, markers and manifests only (no chunk is
downloaded; the listing itself is syncjobs/engine/bucket_source.py). Used by
Remote → Content, `remote content`, `remote restore` and the drill task.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from datastores.engine.errors import DatastoreError
from remotes.engine.client import RequestCounters
from remotes.models import record_usage
from syncjobs.engine.asof import AsOfBucket
from syncjobs.engine.bucket import Bucket, SyncError
from syncjobs.engine.bucket_source import Listing, RemoteSnapshot, list_snapshots, remote_snapshot
from syncjobs.engine.scope import MANIFEST_NAME, MARKER_NAME, normalize_ns, parse_snapshot_dir

__all__ = ["Listing", "StorePrefix", "fetch_snapshot", "find_snapshot", "list_snapshots", "make_bucket",
           "record_requests", "store_prefixes"]


@dataclass
class StorePrefix:
    prefix: str
    uuid: str = ""


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


def find_snapshot(listing: Listing, name: str, ns: str = "") -> RemoteSnapshot | None:
    """A snapshot by `type/id/time` (with --ns) or its full rel dir `ns/a/type/id/time`."""
    name = name.strip("/")
    for s in listing.snapshots:
        if s.rel_dir == name or (s.ns == normalize_ns(ns) and s.name == name):
            return s
    return None


def record_requests(remote, counters) -> None:
    """Count a page's or command's requests on the remote; accounting never breaks the caller."""
    try:
        record_usage(remote, counters.snapshot())
    except Exception:  # noqa: BLE001
        pass


def fetch_snapshot(obj, prefix: str, rel_dir: str, as_of: datetime | None = None):
    """The bucket snapshot (its manifest only), or None and a message why not (naming the
    field: snapshot, or as-of). With `as_of` the snapshot as it was then (AsOfBucket)."""
    rd = (rel_dir or "").strip("/")
    if parse_snapshot_dir(rd) is None:
        return None, f"snapshot: '{rel_dir}' is not a snapshot path ([ns/…/]<type>/<id>/<time>)"
    counters = RequestCounters()
    bucket = make_bucket(obj, obj.client(counters=counters), prefix)
    rel = f"{rd}/{MANIFEST_NAME}"
    try:
        if as_of is not None:
            bucket = AsOfBucket(bucket, as_of)
            bucket.check()
        blob = bucket.get_if_exists(rel)
        if blob is None:
            when = f" at {as_of.isoformat()}" if as_of is not None else ""
            return None, f"snapshot: s3://{bucket.bucket}/{bucket.key(rel)} does not exist{when}"
        return remote_snapshot(rd, {}, blob, bucket.key(rel)), ""
    except SyncError as e:
        return None, str(e) if e.code == "AsOfEmpty" else f"snapshot: {e}"
    except DatastoreError as e:
        return None, f"snapshot: {e}"
    finally:
        record_requests(obj, counters)
