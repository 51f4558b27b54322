"""check_bucket_consistency: is every snapshot in a bucket prefix restorable?

Lists the prefix once, reads every manifest and index, and reports any
file or chunk a manifest needs that is not there (invariant 1), plus the
harmless leftovers: chunks nothing references, files of unfinished snapshots.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from datastores.engine.errors import DatastoreError
from datastores.engine.index import read_index
from datastores.engine.manifest import Manifest

from .bucket import Bucket, SyncError
from .inventory import parse_chunk_rel
from .scope import LOCAL_ONLY_FILES, MANIFEST_NAME, parse_snapshot_file


@dataclass
class ConsistencyReport:
    snapshots: int = 0
    chunks: int = 0
    problems: list[str] = field(default_factory=list)     # restorability broken
    unreferenced_chunks: set[str] = field(default_factory=set)
    unfinished: list[str] = field(default_factory=list)   # snapshot dirs without a manifest

    @property
    def ok(self) -> bool:
        return not self.problems


def check_bucket_consistency(bucket: Bucket) -> ConsistencyReport:
    rep = ConsistencyReport()
    chunks: set[str] = set()
    dirs: dict[str, set[str]] = {}
    for info in bucket.list_info(""):
        digest = parse_chunk_rel(info.rel)
        if digest:
            chunks.add(digest)
            continue
        parsed = parse_snapshot_file(info.rel)
        if parsed:
            dirs.setdefault(parsed[0].rel_dir, set()).add(parsed[1])
    rep.chunks = len(chunks)
    referenced: set[str] = set()
    for rd, names in sorted(dirs.items()):
        if MANIFEST_NAME not in names:
            rep.unfinished.append(rd)
            continue
        rep.snapshots += 1
        key = bucket.key(f"{rd}/{MANIFEST_NAME}")
        try:
            manifest = Manifest.from_blob(bucket.get(f"{rd}/{MANIFEST_NAME}"), key)
        except (SyncError, DatastoreError) as e:
            rep.problems.append(f"{key}: {e}")
            continue
        for f in manifest.files:
            name = f["filename"]
            if name in LOCAL_ONLY_FILES:
                continue
            fkey = bucket.key(f"{rd}/{name}")
            if name not in names:
                rep.problems.append(f"{fkey}: named by the manifest but missing")
                continue
            if not name.endswith((".didx", ".fidx")):
                continue
            try:
                idx = read_index(bucket.get(f"{rd}/{name}"), fkey)
            except (SyncError, DatastoreError) as e:
                rep.problems.append(f"{fkey}: {e}")
                continue
            for d in idx.digests:
                h = d.hex()
                referenced.add(h)
                if h not in chunks:
                    rep.problems.append(f"{bucket.key(f'.chunks/{h[:4]}/{h}')}: needed by {fkey} but missing")
    rep.unreferenced_chunks = chunks - referenced
    return rep
