"""Verify snapshots: manifest, blobs, indexes and every chunk they name.

Chunks: CRC always; the crypt mode must match the manifest; plain chunks are
decompressed and their digest and length checked; encrypted chunks too when
the key is given, else CRC only. Corrupt chunks are renamed <digest>.<n>.bad
(so a later backup or pull can store a good copy again). The outcome is
recorded in the manifest's unprotected `verify_state`.
"""
from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import blake3

from .blob import blob_is_encrypted, check_blob_crc
from .datastore import Datastore, SnapshotRef, validate_ns
from .digestset import DigestSet
from .errors import CorruptionError, DatastoreError, MissingObjectError
from .index import read_index
from .report import Reporter
from .source import check_chunk

MiB = 1024 * 1024
WINDOW = 512  # chunk checks queued at a time: memory stays flat whatever the index's size


@dataclass
class VerifyResult:
    ref: SnapshotRef
    ok: bool = True
    errors: list[str] = field(default_factory=list)
    corrupt_chunks: list[str] = field(default_factory=list)
    missing_chunks: list[str] = field(default_factory=list)
    chunks_checked: int = 0
    bytes_checked: int = 0
    duration: float = 0.0
    skipped: bool = False

    def fail(self, msg: str) -> None:
        self.ok = False
        self.errors.append(msg)


def _check_chunk(store: Datastore, hx: str, expected_len: int, want_encrypted: bool, crypt):
    """Return None if the chunk is good, else (kind, reason) with kind 'missing'|'corrupt'."""
    try:
        raw = store.source.read_chunk(hx)
    except MissingObjectError:
        return "missing", "missing"
    if check_blob_crc(raw):
        enc = blob_is_encrypted(raw)
        if enc != want_encrypted:
            return "corrupt", f"crypt mode is {'encrypt' if enc else 'none'}, the index expects " \
                              f"{'encrypt' if want_encrypted else 'none'}"
    try:  # without the key an encrypted chunk is checked by CRC only
        check_chunk(hx, raw, crypt if want_encrypted else None, expected_len, crc_only_without_key=True)
    except DatastoreError as e:
        return "corrupt", str(e).removeprefix(f"chunk {hx}: ")
    return None


def verify_snapshot(store: Datastore, ref: SnapshotRef, reporter: Reporter | None = None, crypt=None,
                    verified_chunks: DigestSet | None = None, corrupt_chunks: set | None = None,
                    upid: str | None = None, now: float | None = None, record: bool = True,
                    workers: int = 2) -> VerifyResult:
    """Verify one snapshot and record the result in its manifest (unless record=False).

    verified_chunks (a DigestSet of binary digests) / corrupt_chunks (a set of hex
    digests) are shared across snapshots of one job so every chunk is read once.
    """
    reporter = reporter or Reporter()
    verified = verified_chunks if verified_chunks is not None else DigestSet()
    corrupt = corrupt_chunks if corrupt_chunks is not None else set()
    res = VerifyResult(ref)
    t0 = time.monotonic()
    sdir = store.snapshot_path(ref)
    try:
        manifest = store.load_manifest(ref)
    except DatastoreError as e:
        res.fail(str(e))
        reporter.warn(f"verify {ref}: {e}")
        res.duration = time.monotonic() - t0
        return res
    if crypt is not None and manifest.encrypted:
        if manifest.key_fingerprint and manifest.key_fingerprint != crypt.fingerprint:
            reporter.warn(f"verify {ref}: encrypted with key {manifest.key_fingerprint}, not "
                          f"{crypt.fingerprint}; checking chunk CRCs only")
            crypt = None
        else:
            try:
                manifest.check_signature(crypt, f"{ref}/index.json.blob")
            except CorruptionError as e:
                res.fail(str(e))
    elif not manifest.encrypted:
        crypt = None
    reporter.log(f"verify {ref}")

    pool = ThreadPoolExecutor(workers, thread_name_prefix="verify")
    try:
        for entry in manifest.files:
            reporter.check_abort()
            name = entry["filename"]
            path = sdir / name
            if not path.exists():
                res.fail(f"{ref}/{name}: file is missing")
                continue
            want_enc = entry.get("crypt-mode") == "encrypt"
            if name.endswith(".blob"):
                raw = path.read_bytes()
                if len(raw) != entry["size"] or blake3.blake3(raw).hexdigest() != entry["csum"]:
                    res.fail(f"{ref}/{name}: size or checksum does not match the manifest")
                elif not check_blob_crc(raw):
                    res.fail(f"{ref}/{name}: blob CRC mismatch")
                continue
            try:
                idx = read_index(path, f"{ref}/{name}")
            except DatastoreError as e:
                res.fail(str(e))
                continue
            if idx.size != entry["size"] or idx.csum != entry["csum"]:
                res.fail(f"{ref}/{name}: index size/checksum does not match the manifest")
                continue
            def todo(idx=idx, name=name):
                queued = DigestSet(expected=len(idx.digests))  # this index's chunks already queued
                for i, d in enumerate(idx.digests):
                    if d in verified or d in queued:
                        continue
                    hx = d.hex()
                    if hx in corrupt:
                        res.fail(f"chunk {hx} (in {name}) is corrupt or missing (found earlier in this job)")
                        continue
                    queued.add(d)
                    s, e = idx.chunk_range(i)
                    yield d, hx, e - s
            items = todo()
            done = 0
            while True:
                # map() keeps the reads of one window in flight, results in order.
                batch = list(itertools.islice(items, WINDOW))
                if not batch:
                    break
                results = pool.map(lambda item: _check_chunk(store, item[1], item[2], want_enc, crypt), batch)
                for (d, hx, length), bad in zip(batch, results):
                    done += 1
                    res.chunks_checked += 1
                    res.bytes_checked += length
                    if done % 64 == 0:
                        reporter.check_abort()
                    if bad is None:
                        verified.add(d)
                        continue
                    kind, reason = bad
                    corrupt.add(hx)
                    if kind == "missing":
                        res.missing_chunks.append(hx)
                        res.fail(f"chunk {hx} (in {name}) is missing")
                    else:
                        res.corrupt_chunks.append(hx)
                        try:
                            bad_path = store.chunks.mark_bad(hx)
                            where = f"; renamed to {bad_path.name}"
                        except FileNotFoundError:
                            where = ""
                        res.fail(f"chunk {hx} (in {name}) is corrupt: {reason}{where}")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

    res.duration = time.monotonic() - t0
    for msg in res.errors:
        reporter.warn(f"verify {ref}: {msg}")
    reporter.log(f"verify {ref}: {'ok' if res.ok else 'FAILED'} ({res.chunks_checked} chunks, "
                 f"{res.bytes_checked / MiB:.1f} MiB in {res.duration:.2f} s)")
    if record:
        state = {"state": "ok" if res.ok else "failed", "time": int(time.time() if now is None else now)}
        if upid:
            state["upid"] = upid
        try:
            store.update_manifest(ref, lambda m: m.unprotected.__setitem__("verify_state", state))
        except DatastoreError as e:
            reporter.warn(f"verify {ref}: could not record the verify state: {e}")
    return res


@dataclass
class VerifyJobResult:
    results: list[VerifyResult] = field(default_factory=list)
    skipped: list[SnapshotRef] = field(default_factory=list)

    @property
    def failed(self) -> list[SnapshotRef]:
        return [r.ref for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failed


def needs_verify(state: dict | None, ignore_verified: bool, outdated_after_days: float | None,
                 now: float) -> bool:
    """PBS selection: never verified -> yes; verified -> only when outdated (or not ignoring)."""
    if not ignore_verified or not state:
        return True
    if outdated_after_days is None:
        return False
    return (now - float(state.get("time", 0))) / 86400 > outdated_after_days


def verify_datastore(store: Datastore, reporter: Reporter | None = None, ignore_verified: bool = True,
                     outdated_after_days: float | None = None, ns: str = "", crypt=None,
                     upid: str | None = None, now: float | None = None,
                     recursive: bool = True) -> VerifyJobResult:
    """Verify the finished snapshots of `ns` (and below); each chunk is read once."""
    reporter = reporter or Reporter()
    validate_ns(ns)
    now = time.time() if now is None else now
    job = VerifyJobResult()
    verified = DigestSet()
    corrupt: set[str] = set()
    snaps = [r for r in store.list_snapshots(ns, recursive) if r.finished]
    todo = []
    for ref in snaps:
        try:
            state = store.load_manifest(ref).verify_state
        except DatastoreError:
            state = None
        if needs_verify(state, ignore_verified, outdated_after_days, now):
            todo.append(ref)
        else:
            job.skipped.append(ref)
    reporter.log(f"verify datastore {store.path}: {len(todo)} snapshots to verify, "
                 f"{len(job.skipped)} skipped (already verified)")
    for n, ref in enumerate(todo):
        reporter.check_abort()
        job.results.append(verify_snapshot(store, ref, reporter, crypt, verified, corrupt, upid, now))
        reporter.progress((n + 1) / len(todo), f"{n + 1} of {len(todo)} snapshots")
    if job.failed:
        reporter.warn(f"verification failed for {len(job.failed)} snapshots: "
                      + ", ".join(str(r) for r in job.failed))
    else:
        reporter.log("all verified snapshots are ok")
    return job
