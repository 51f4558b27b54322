"""A bucket prefix read as it was at a time (issue 12, docs/DESIGN.md §3): pull `--as-of`
and restore straight from a bucket `--as-of` read through this instead of the current keys.

With versioning (Object Lock), ListObjectVersions -- once, for the whole prefix -- tells
for each key the version that was current at `as_of`: the newest version or delete marker
written at or before that time. A key whose version then was a delete marker, or that did
not exist yet, is absent. GETs name that version (GetObject VersionId), so what an attacker
wrote later (deletions, overwritten manifests) is not seen, and nothing in the bucket is
changed: `AsOfBucket` refuses every write.
"""
from __future__ import annotations

from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError

from .bucket import Bucket, ObjectInfo, SyncError
from .scope import MANIFEST_NAME

# (last modified, version id (None: a delete marker), is latest, etag, size), newest first
Version = tuple


def object_history(bucket: Bucket) -> dict[str, list[Version]]:
    """rel -> every version and delete marker of the key under the bucket's prefix, newest first."""
    prefix = bucket.prefix + "/" if bucket.prefix else ""
    out: dict[str, list] = {}
    args = dict(Bucket=bucket.bucket, Prefix=prefix, MaxKeys=bucket.page_size)
    while True:
        try:
            resp = bucket.client.list_object_versions(**args)
        except (ClientError, BotoCoreError) as exc:
            raise bucket._error("ListObjectVersions", "", exc) from exc
        for v in resp.get("Versions", []):
            out.setdefault(bucket.rel(v["Key"]), []).append(
                (v["LastModified"], v["VersionId"], v["IsLatest"], v.get("ETag", "").strip('"'), int(v.get("Size", 0))))
        for m in resp.get("DeleteMarkers", []):
            out.setdefault(bucket.rel(m["Key"]), []).append((m["LastModified"], None, m["IsLatest"], "", 0))
        if not resp.get("IsTruncated"):
            break
        args["KeyMarker"] = resp.get("NextKeyMarker")
        if resp.get("NextVersionIdMarker"):
            args["VersionIdMarker"] = resp["NextVersionIdMarker"]
        else:
            args.pop("VersionIdMarker", None)
    for entries in out.values():
        entries.sort(key=lambda e: (e[0], e[2]), reverse=True)  # newest first; the latest wins a tie
    return out


def version_at(entries: list[Version], as_of: datetime) -> Version | None:
    """The version (or delete marker) current at `as_of`, None when the key did not exist yet."""
    return next((e for e in entries if e[0] <= as_of), None)


class AsOfBucket(Bucket):
    """The prefix of `bucket` as it read at `as_of` (an aware datetime), read-only.

    Lists, HEADs and GETs answer as the plain Bucket would have at that time; a key absent
    then raises SyncError code NoSuchKey, as a missing object does."""

    def __init__(self, bucket: Bucket, as_of: datetime):
        super().__init__(bucket.client, bucket.bucket, bucket.prefix,
                         skip_if_none_match=bucket.skip_if_none_match,
                         delete_via_delete_object=bucket.delete_via_delete_object)
        self.page_size = bucket.page_size
        self.as_of = as_of
        self._view: dict[str, Version] | None = None
        self._first_manifest: datetime | None = None

    def __repr__(self):
        return f"AsOfBucket({self.bucket}/{self.prefix} @ {self.as_of.isoformat()})"

    @property
    def view(self) -> dict[str, Version]:
        """rel -> the version current at as_of (one ListObjectVersions listing, on first use)."""
        if self._view is None:
            view, first = {}, None
            for rel, entries in object_history(self).items():
                then = version_at(entries, self.as_of)
                if then is not None and then[1] is not None:
                    view[rel] = then
                if rel.endswith("/" + MANIFEST_NAME):
                    written = min((e[0] for e in entries if e[1] is not None), default=None)
                    if written is not None and (first is None or written < first):
                        first = written
            self._view, self._first_manifest = view, first
        return self._view

    def check(self) -> int:
        """Raise SyncError (code AsOfEmpty) naming the time when the prefix held no finished
        snapshot then (e.g. a time before the first push); returns how many keys it held."""
        view = self.view
        if not any(rel.endswith("/" + MANIFEST_NAME) for rel in view):
            where = f"s3://{self.bucket}/{self.prefix}"
            if self._first_manifest is None:
                why = "no snapshot manifest was ever written there"
            elif self._first_manifest > self.as_of:
                why = f"its first snapshot was written at {self._first_manifest.isoformat()}, later"
            else:
                why = "every snapshot manifest was deleted by then"
            raise SyncError(f"as-of {self.as_of.isoformat()}: {where} held no finished snapshot at that time ({why})",
                            code="AsOfEmpty")
        return len(view)

    # -- reading ------------------------------------------------------------------------------
    def _absent(self, op: str, rel: str) -> SyncError:
        key = self.key(rel)
        return SyncError(f"{op} s3://{self.bucket}/{key} failed: NoSuchKey: the object did not exist at "
                         f"{self.as_of.isoformat()}", key=key, code="NoSuchKey")

    def get(self, rel: str, version: str | None = None) -> bytes:
        entry = self.view.get(rel.lstrip("/"))
        if entry is None:
            raise self._absent("GET", rel)
        return super().get(rel, version=entry[1])

    def head(self, rel: str) -> ObjectInfo | None:
        entry = self.view.get(rel.lstrip("/"))
        return None if entry is None else ObjectInfo(rel.lstrip("/"), entry[4], entry[0], entry[3])

    def count_objects(self, rel_prefix: str) -> tuple[int, bool]:
        n = sum(1 for rel in self.view if rel.startswith(rel_prefix))
        return min(n, self.page_size), n > self.page_size

    def _list(self, rel_prefix: str, delimiter: str | None):
        dirs: set[str] = set()
        for rel in sorted(self.view):
            if not rel.startswith(rel_prefix):
                continue
            rest = rel[len(rel_prefix):]
            if delimiter and delimiter in rest:
                d = rel_prefix + rest.split(delimiter, 1)[0] + delimiter
                if d not in dirs:
                    dirs.add(d)
                    yield d
                continue
            entry = self.view[rel]
            yield ObjectInfo(rel, entry[4], entry[0], entry[3])

    # -- never writing ------------------------------------------------------------------------
    def _read_only(self, *args, **kwargs):
        raise SyncError(f"s3://{self.bucket}/{self.prefix} is read as of {self.as_of.isoformat()}: not writable")

    put = put_locked = _put = extend_lock = delete_many = _read_only
