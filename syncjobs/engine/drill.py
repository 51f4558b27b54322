"""Restore drills: prove that the off-site copy in a bucket restores.

`drill_prefix` picks the newest snapshot of each group plus a seeded random
sample of older ones, reads each of their files and every chunk they
reference exactly once through the bucket source (each object checked: CRC,
the manifest's csum/size, the chunk digest), restores one archive into a
scratch directory and checks the restored size against the manifest. Every
corrupt or missing object is reported by its key.
"""
from __future__ import annotations

import random
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from datastores.engine.datastore import Datastore
from datastores.engine.errors import CorruptionError, DatastoreError
from datastores.engine.report import Reporter
from datastores.engine.restore import restore_snapshot_archive
from datastores.engine.source import SnapshotReader

from .bucket import Bucket, SyncError
from .bucket_source import BucketSource, RemoteSnapshot, list_snapshots, problem_text, read_chunks, read_files
from .common import fmt_bytes
from .inventory import chunk_rel
from .scope import LOCAL_ONLY_FILES, MANIFEST_NAME


@dataclass
class DrillResult:
    snapshots: list[str] = field(default_factory=list)     # checked (rel dirs, with prefix)
    chunks: int = 0
    bytes: int = 0                                          # downloaded object bytes
    problems: list[str] = field(default_factory=list)       # "<key>: <what is wrong>"
    restored: str = ""                                      # "<prefix>/<rel_dir>/<archive>"
    restore_skipped: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def merge(self, other: DrillResult) -> None:
        self.snapshots += other.snapshots
        self.chunks += other.chunks
        self.bytes += other.bytes
        self.problems += other.problems
        self.restored = self.restored or other.restored
        if not self.restored:
            self.restore_skipped = other.restore_skipped or self.restore_skipped


def pick_snapshots(snaps: list[RemoteSnapshot], sample: int, seed: int) -> list[RemoteSnapshot]:
    """The newest snapshot of each group plus `sample` random older ones per group (seeded)."""
    rng = random.Random(seed)
    groups: dict[tuple, list[RemoteSnapshot]] = {}
    for s in snaps:
        groups.setdefault((s.ns, s.backup_type, s.backup_id), []).append(s)
    out = []
    for key in sorted(groups):
        items = sorted(groups[key], key=lambda s: s.time)
        newest, older = items[-1], items[:-1]
        chosen = rng.sample(older, min(max(sample, 0), len(older))) if older else []
        out.append(newest)
        out.extend(sorted(chosen, key=lambda s: s.time))
    return out


def _restore_candidate(picked: list[RemoteSnapshot], keys: dict):
    """The archive to restore: the smallest index archive of a newest snapshot
    we can decrypt, as (size, rel_dir, filename, snapshot); or (None, why not)."""
    newest: dict[tuple, RemoteSnapshot] = {}
    for s in picked:
        g = (s.ns, s.backup_type, s.backup_id)
        if g not in newest or s.time > newest[g].time:
            newest[g] = s
    candidates = [(f.size, s.rel_dir, f.filename, s) for s in newest.values()
                  if not (s.encrypted and s.key_fingerprint not in keys)
                  for f in s.files if f.filename.endswith((".didx", ".fidx"))]
    if candidates:
        return min(candidates, key=lambda c: (c[0], c[1], c[2])), ""
    return None, ("no archive to restore: every snapshot is encrypted with a key this server does not hold"
                  if any(s.encrypted for s in picked) else "no archives")


def drill_prefix(bucket: Bucket, sample: int, seed: int, scratch_dir, keys: dict | None = None,
                 reporter: Reporter | None = None, workers: int = 8) -> DrillResult:
    """Drill one store prefix. `keys` maps key fingerprints to CryptConfigs
    (encrypted chunks are checked by CRC only without their key; the restore
    step picks an archive it can decrypt)."""
    rep = reporter or Reporter()
    keys = keys or {}
    res = DrillResult()
    where = f"s3://{bucket.bucket}/{bucket.prefix}"
    source = BucketSource(bucket)
    listing = list_snapshots(bucket)
    for p in listing.unreadable + ([listing.warning] if listing.warning else []):
        res.problems.append(p)
        rep.log(f"ERROR: {p}")
    if not listing.snapshots:
        rep.log(f"{where}: no finished snapshots")
        return res
    picked = pick_snapshots(listing.snapshots, sample, seed)
    groups = {(s.ns, s.backup_type, s.backup_id) for s in listing.snapshots}
    rep.log(f"{where}: {len(listing.snapshots)} snapshots in {len(groups)} groups; "
            f"checking {len(picked)} (newest of each group + up to {sample} older, seed {seed})")

    restore, res.restore_skipped = _restore_candidate(picked, keys)
    if restore is not None:  # first, so each of its chunks is fetched once, straight into the scratch store
        picked.sort(key=lambda s: s.rel_dir != restore[1])
    scratch_root = Path(tempfile.mkdtemp(prefix="drill-", dir=scratch_dir))
    try:
        scratch = Datastore.create(scratch_root / "store") if restore else None
        seen: set[str] = set()
        restore_ok = restore is not None
        restore_files: dict[str, bytes] = {}
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="drill") as pool:
            for s in picked:
                rep.check_abort()
                snapshot = source.snapshot(s.rel_dir, s.manifest)
                res.snapshots.append(snapshot.label)
                res.bytes += len(s.manifest)
                is_restore = restore is not None and s.rel_dir == restore[1]
                before = len(res.problems)
                crypt = keys.get(s.key_fingerprint) if s.encrypted else None
                if crypt is not None:
                    try:
                        snapshot.check_key(crypt)
                    except DatastoreError as e:
                        res.problems.append(problem_text(e, snapshot.what(MANIFEST_NAME)))
                names = [n for n in snapshot.manifest.filenames if n not in LOCAL_ONLY_FILES]

                def counted(n: int) -> None:
                    res.bytes += n

                files, digests = read_files(snapshot, names, res.problems, on_read=counted)
                digests = [d for d in digests if d not in seen]
                seen.update(digests)
                for digest, fut in read_chunks(pool, source, digests, workers, crypt):
                    res.chunks += 1
                    try:
                        blob = fut.result()
                    except (CorruptionError, DatastoreError, SyncError) as e:
                        res.problems.append(problem_text(e, bucket.key(chunk_rel(digest))))
                        continue
                    res.bytes += len(blob)
                    if is_restore:
                        scratch.insert_chunk(digest, blob, verify=False, fsync=False)  # checked above
                new = res.problems[before:]
                for p in new:
                    rep.log(f"ERROR: {p}")
                if is_restore:
                    restore_ok = restore_ok and not new
                    restore_files = files
                rep.log(f"snapshot {snapshot.label}: {len(snapshot.manifest.filenames)} file(s), "
                        f"{len(digests)} chunk(s) not seen before - "
                        f"{'OK' if not new else f'{len(new)} problem(s)'}")
        if restore is not None and restore_ok and restore[2] in restore_files:
            _restore_step(scratch, scratch_root, restore, restore_files[restore[2]], bucket.key(restore[1]),
                          keys, res, rep)
        elif restore is not None and not res.restore_skipped:
            res.restore_skipped = f"{bucket.key(restore[1])}/{restore[2]} not restored: its objects failed the check"
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)
    return res


def _restore_step(scratch: Datastore, scratch_root: Path, restore, index_blob: bytes, label: str,
                  keys: dict, res: DrillResult, rep: Reporter) -> None:
    """Restore the chosen archive from the scratch store (its checked chunks)."""
    size, rd, filename, snap = restore
    key = f"{label}/{filename}"
    crypt = keys.get(snap.key_fingerprint) if snap.encrypted else None
    scratch.write_file_atomic(f"{rd}/{filename}", index_blob)
    snapshot = SnapshotReader(scratch.source, rd, label, manifest_blob=snap.manifest)
    target = scratch_root / ("restore" if filename.endswith(".didx") else "restore.img")
    try:
        out = restore_snapshot_archive(snapshot, filename.rsplit(".", 1)[0], target, crypt)
    except (CorruptionError, DatastoreError, OSError) as e:
        res.problems.append(problem_text(e, key))
        rep.log(f"ERROR: restore of {key} failed: {e}")
        return
    if out.bytes != size:
        res.problems.append(f"{key}: restored {out.bytes} bytes, the manifest says {size}")
        rep.log(f"ERROR: {res.problems[-1]}")
        return
    res.restored = key
    rep.log(f"restored {key} to a scratch directory: {fmt_bytes(out.bytes)}, {out.files} files, "
            f"size matches the manifest, every chunk digest verified")
