"""Restore drills: prove that the off-site copy in a bucket restores.

`drill_prefix` is the work (plain Python, no Django): it picks the newest
snapshot of each group plus a seeded random sample of older ones, downloads
each of their files and every chunk they reference exactly once, verifies
each object (CRC, the manifest's csum/size, the chunk digest), restores one
archive into a scratch datastore and checks the restored size against the
manifest. Every corrupt or missing object is reported by its key.

`drill_status(remote)` is what the dashboard and the remote pages show.
"""
from __future__ import annotations

import random
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from datastores.engine.blob import blob_is_encrypted, check_blob_crc, decode_blob
from datastores.engine.crypto import chunk_digest
from datastores.engine.datastore import Datastore as EngineStore
from datastores.engine.errors import CorruptionError, DatastoreError
from datastores.engine.manifest import Manifest
from datastores.engine.report import Reporter
from syncjobs.engine.bucket import Bucket, SyncError
from syncjobs.engine.common import fmt_bytes, map_bounded
from syncjobs.engine.inventory import chunk_rel
from syncjobs.engine.pull import RemoteSnapshot, verify_file
from syncjobs.engine.scope import LOCAL_ONLY_FILES, MANIFEST_NAME
from syncjobs.remote_content import list_snapshots

_MISSING = ("NoSuchKey", "404", "NotFound")


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

    def merge(self, other: "DrillResult") -> None:
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


def _problem(e: Exception, key: str) -> str:
    if isinstance(e, SyncError):
        if e.code in _MISSING:
            return f"{e.key or key}: object is missing"
        return str(e)
    msg = str(e)
    return msg if key in msg else f"{key}: {msg}"


def _check_chunk(bucket: Bucket, digest: str, keys: dict, scratch: EngineStore | None):
    """Download one chunk and verify it; returns (size, problem or None)."""
    key = bucket.key(chunk_rel(digest))
    try:
        blob = bucket.get(chunk_rel(digest))
    except SyncError as e:
        return 0, _problem(e, key)
    try:
        if not check_blob_crc(blob):
            raise CorruptionError(f"{key}: CRC mismatch (the stored bytes are corrupt)", key)
        crypt = None
        if blob_is_encrypted(blob):
            crypt = keys.get("__chunk__")  # the key of the snapshot being checked, if known
        if not blob_is_encrypted(blob) or crypt is not None:
            data = decode_blob(blob, crypt, f"chunk {key}")
            if chunk_digest(data, crypt).hex() != digest:
                raise CorruptionError(f"{key}: content does not match its digest", key)
        if scratch is not None:
            scratch.insert_chunk(digest, blob, verify=False, fsync=False)
    except (CorruptionError, DatastoreError) as e:
        return len(blob), _problem(e, key)
    return len(blob), None


def drill_prefix(bucket: Bucket, sample: int, seed: int, scratch_dir, keys: dict | None = None,
                 reporter: Reporter | None = None, workers: int = 8) -> DrillResult:
    """Drill one store prefix. `keys` maps key fingerprints to CryptConfigs
    (encrypted chunks are checked by CRC only without their key; the restore
    step picks an archive it can decrypt)."""
    rep = reporter or Reporter()
    keys = keys or {}
    res = DrillResult()
    where = f"s3://{bucket.bucket}/{bucket.prefix}"
    listing = list_snapshots(bucket)
    for p in listing.unreadable:
        res.problems.append(p)
        rep.log(f"ERROR: {p}")
    if not listing.snapshots:
        rep.log(f"{where}: no finished snapshots")
        return res
    picked = pick_snapshots(listing.snapshots, sample, seed)
    rep.log(f"{where}: {len(listing.snapshots)} snapshots in {len({(s.ns, s.backup_type, s.backup_id) for s in listing.snapshots})} groups; "
            f"checking {len(picked)} (newest of each group + up to {sample} older, seed {seed})")

    # the archive to restore: the smallest index archive of a newest snapshot we can decrypt
    newest: dict[tuple, RemoteSnapshot] = {}
    for s in picked:
        g = (s.ns, s.backup_type, s.backup_id)
        if g not in newest or s.time > newest[g].time:
            newest[g] = s
    candidates = []
    for s in newest.values():
        if s.encrypted and s.key_fingerprint not in keys:
            continue
        for f in s.files:
            if f.filename.endswith((".didx", ".fidx")):
                candidates.append((f.size, s.rel_dir, f.filename, s))
    restore = min(candidates, key=lambda c: (c[0], c[1], c[2])) if candidates else None
    if restore is None:
        res.restore_skipped = ("no archive to restore: every snapshot is encrypted with a key this "
                               "server does not hold" if any(s.encrypted for s in picked) else "no archives")

    if restore is not None:  # first, so each of its chunks is fetched once, straight into the scratch store
        picked.sort(key=lambda s: s.rel_dir != restore[1])
    scratch_root = Path(tempfile.mkdtemp(prefix="drill-", dir=scratch_dir))
    try:
        scratch = EngineStore.create(scratch_root / "store") if restore else None
        seen: set[str] = set()
        restore_blobs: dict[str, bytes] = {}
        restore_ok = restore is not None
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="drill") as pool:
            for s in picked:
                rep.check_abort()
                rd_key = bucket.key(s.rel_dir)
                res.snapshots.append(rd_key)
                res.bytes += len(s.manifest)
                is_restore = restore is not None and s.rel_dir == restore[1]
                digests: list[str] = []
                snap_problems = len(res.problems)
                manifest = Manifest.from_blob(s.manifest, bucket.key(f"{s.rel_dir}/{MANIFEST_NAME}"))
                entries = {f["filename"]: f for f in manifest.files}
                crypt = keys.get(s.key_fingerprint) if s.encrypted else None
                if crypt is not None:
                    try:
                        manifest.check_signature(crypt, bucket.key(f"{s.rel_dir}/{MANIFEST_NAME}"))
                    except DatastoreError as e:
                        res.problems.append(_problem(e, bucket.key(f"{s.rel_dir}/{MANIFEST_NAME}")))
                for name, entry in entries.items():
                    if name in LOCAL_ONLY_FILES:
                        continue
                    rel = f"{s.rel_dir}/{name}"
                    key = bucket.key(rel)
                    try:
                        data = bucket.get(rel)
                        res.bytes += len(data)
                        idx = verify_file(name, data, entry, key)
                    except (SyncError, CorruptionError, DatastoreError) as e:
                        res.problems.append(_problem(e, key))
                        continue
                    if is_restore and name == restore[2]:
                        restore_blobs[name] = data
                    if idx is not None:
                        for d in idx.digests:
                            h = d.hex()
                            if h not in seen:
                                seen.add(h)
                                digests.append(h)
                ckeys = {"__chunk__": crypt} if crypt is not None else {}
                store_for = scratch if is_restore else None
                for digest, fut in map_bounded(pool, lambda d: _check_chunk(bucket, d, ckeys, store_for),
                                               digests, max(1, workers) * 2):
                    size, problem = fut.result()
                    res.chunks += 1
                    res.bytes += size
                    if problem:
                        res.problems.append(problem)
                new = res.problems[snap_problems:]
                for p in new:
                    rep.log(f"ERROR: {p}")
                if is_restore and new:
                    restore_ok = False
                rep.log(f"snapshot {rd_key}: {len(entries)} file(s), {len(digests)} chunk(s) not seen before - "
                        f"{'OK' if not new else f'{len(new)} problem(s)'}")
        if restore is not None and restore_ok and restore[2] in restore_blobs:
            _restore_step(bucket, scratch, scratch_root, restore, restore_blobs[restore[2]], keys, res, rep)
        elif restore is not None and not res.restore_skipped:
            res.restore_skipped = f"{bucket.key(restore[1])}/{restore[2]} not restored: its objects failed the check"
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)
    return res


def _restore_step(bucket, scratch, scratch_root, restore, index_blob, keys, res, rep) -> None:
    from datastores.engine.datastore import parse_time
    from datastores.engine.restore import restore_archive
    from syncjobs.engine.scope import parse_snapshot_dir
    size, rd, filename, snap = restore
    archive = filename.rsplit(".", 1)[0]
    key = f"{bucket.key(rd)}/{filename}"
    crypt = keys.get(snap.key_fingerprint) if snap.encrypted else None
    scratch.write_file_atomic(f"{rd}/{filename}", index_blob)
    scratch.write_file_atomic(f"{rd}/{MANIFEST_NAME}", snap.manifest)
    p = parse_snapshot_dir(rd)
    ref = scratch.snapshot_ref(p.ns, p.backup_type, p.backup_id, parse_time(p.time))
    target = scratch_root / ("restore" if filename.endswith(".didx") else "restore.img")
    try:
        out = restore_archive(scratch, ref, archive, target, crypt)
    except (CorruptionError, DatastoreError, OSError) as e:
        res.problems.append(_problem(e, key))
        rep.log(f"ERROR: restore of {key} failed: {e}")
        return
    if out.bytes != size:
        res.problems.append(f"{key}: restored {out.bytes} bytes, the manifest says {size}")
        rep.log(f"ERROR: {res.problems[-1]}")
        return
    res.restored = key
    rep.log(f"restored {key} to a scratch directory: {fmt_bytes(out.bytes)}, {out.files} files, "
            f"size matches the manifest, every chunk digest verified")


# -- status for pages and the dashboard (Django) ---------------------------------------------

def drill_status(remote) -> dict | None:
    """The last restore drill of a remote (a Remote or its ID), or None if it never ran one.

    {"ok": bool, "time": datetime, "snapshots": int, "message": str, "bytes": int,
     "task_upid": str, "last_ok_time": datetime|None, "ever_passed": bool,
     "text": "last verified restore: <time>, <n> snapshots, OK" | "restore drill FAILED ..."}
    """
    from django.utils import timezone

    from syncjobs.models import DrillRun
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
    from remotes.models import Remote
    from syncjobs.models import DrillRun
    passed = set(DrillRun.objects.filter(ok=True).values_list("remote_id", flat=True))
    return [r.remote_id for r in Remote.objects.all() if r.pk not in passed]
