"""Recover a bucket prefix as of a time (issue 12, docs/DESIGN.md §3).

Someone holding the S3 key can delete or overwrite every object, but with
versioning (Object Lock) the versions we wrote stay. For each key under the
prefix, ListObjectVersions tells which version was current at `as_of`:

- that version is no longer current (deleted, overwritten): it is copied over
  the key (CopyObject with its version id), so it is current again -- and
  locked again when the remote has a lock period;
- the key did not exist at `as_of` (written later): it is hidden behind a
  delete marker, so the prefix reads exactly as it did; its versions stay;
- the current version has the content (ETag) it had then: nothing to do.

Nothing is deleted for good, so a recovery can itself be undone by another
one. Keys whose state at `as_of` is already current cost no request beyond
the listing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from botocore.exceptions import BotoCoreError, ClientError

from datastores.engine.report import Reporter

from .asof import object_history, version_at
from .bucket import Bucket, SyncError


@dataclass
class RecoverResult:
    keys: int = 0                  # keys with any version under the prefix
    restored: list[str] = field(default_factory=list)   # rels whose old version is current again
    hidden: list[str] = field(default_factory=list)     # rels written after as_of, now delete-marked
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)


def parse_as_of(text: str) -> datetime:
    """`--as-of`: an ISO 8601 time ('2026-11-30T18:00:00Z', '2026-11-30 18:00' is UTC) or an epoch."""
    text = (text or "").strip()
    try:
        value = datetime.fromtimestamp(float(text), timezone.utc) if text.replace(".", "", 1).isdigit() \
            else datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"'{text}' is not a time: give e.g. 2026-11-30T18:00:00Z") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    if value > datetime.now(timezone.utc):
        raise ValueError(f"{value.isoformat()} is in the future")
    return value


def recover_prefix(bucket: Bucket, as_of: datetime, reporter: Reporter | None = None,
                   lock: tuple[datetime, str] | None = None) -> RecoverResult:
    """Make every key under the bucket's prefix read as it did at `as_of` (aware datetime).
    `lock` = (retain until, mode) locks each restored copy as a push would."""
    rep = reporter or Reporter()
    result = RecoverResult()
    rep.log(f"recover s3://{bucket.bucket}/{bucket.prefix} as of {as_of.isoformat()}")
    history = object_history(bucket)
    result.keys = len(history)
    to_hide = []
    for rel in sorted(history):
        rep.check_abort()
        entries = history[rel]
        then = version_at(entries, as_of)
        latest = next((e for e in entries if e[2]), entries[0])
        if then is None or then[1] is None:  # did not exist then
            if latest[1] is not None:
                to_hide.append(rel)
            else:
                result.unchanged += 1
            continue
        if then is latest or (latest[1] is not None and latest[3] and latest[3] == then[3]):
            result.unchanged += 1  # current, or a copy of it (an earlier recovery)
            continue
        try:
            _restore_version(bucket, rel, then[1], lock)
            result.restored.append(rel)
        except SyncError as exc:
            result.errors.append(str(exc))
            rep.warn(str(exc))
    if to_hide:
        # manifests first, as a deletion always goes (invariant 1)
        to_hide.sort(key=lambda rel: not rel.endswith("/index.json.blob"))
        failures = bucket.delete_many(to_hide)
        failed = {f[0] for f in failures}
        if failures:
            result.errors.append("could not hide " + bucket.describe_failures(failures))
            rep.warn(result.errors[-1])
        result.hidden = [rel for rel in to_hide if rel not in failed]
    rep.log(f"restored {len(result.restored)} objects to their version of {as_of.isoformat()}, hid "
            f"{len(result.hidden)} written later, {result.unchanged} unchanged (of {result.keys} keys)")
    for rel in result.restored:
        if rel.endswith("/index.json.blob"):
            rep.log(f"restored snapshot {rel.rsplit('/', 1)[0]}")
    return result


def _restore_version(bucket: Bucket, rel: str, version: str, lock) -> None:
    key = bucket.key(rel)
    try:
        resp = bucket.client.copy_object(Bucket=bucket.bucket, Key=key,
                                         CopySource={"Bucket": bucket.bucket, "Key": key, "VersionId": version})
    except (ClientError, BotoCoreError) as exc:
        raise bucket._error("CopyObject", rel, exc) from exc
    if lock is not None:
        # a separate request: some servers want a checksum header on a locked copy, which a copy has no body for
        bucket.extend_lock(rel, resp.get("VersionId"), lock[0], lock[1])
