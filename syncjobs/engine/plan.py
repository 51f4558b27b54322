"""What the next push will upload (or pull download) and which requests it will make, before it runs.

The plan runs the push's own planning (push._Pusher) against the local
inventory, so plan and run agree on what is missing. It touches the bucket
at most once: one LIST page when the inventory has never been reconciled
(first run), to tell an empty prefix (the plan is exact) from one that
already holds objects (the run's full listing will find some of them there,
so the plan is an upper bound). A pull's plan (plan_pull) lists the prefix
once and reads no object.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from datastores.engine.datastore import parse_time
from datastores.engine.errors import DatastoreError
from datastores.engine.report import Reporter

from .bucket import Bucket
from .inventory import Inventory
from .push import PushOptions, _Pusher
from .inventory import parse_chunk_rel
from .scope import LOCAL_ONLY_FILES, MANIFEST_NAME, MARKER_NAME, Scope, parse_snapshot_dir, parse_snapshot_file


@dataclass
class PushPlan:
    snapshots: int = 0                  # snapshots the run syncs
    snapshots_unchanged: int = 0        # already on the remote
    chunks: int = 0                     # chunk objects to upload
    files: int = 0                      # other objects to upload (snapshot files, manifests, marker)
    bytes: int = 0                      # bytes to upload
    requests: dict = field(default_factory=dict)   # RequestCounters kind -> count
    snapshots_vanished: int = 0         # removed from the remote (remove-vanished)
    reconcile: str | None = None        # why the run lists the whole prefix, if it does
    exact: bool = True                  # False: the figures are an upper bound
    notes: list[str] = field(default_factory=list)

    @property
    def objects(self) -> int:
        return self.chunks + self.files


class _Planner(_Pusher):
    """The push's planning without its requests: where the run would GET a
    manifest to compare it (the provider's ETag is not an MD5), the plan
    counts the GET and trusts the size."""

    manifest_gets = 0

    def _remote_manifest_matches(self, rel: str, md5: str, data: bytes) -> bool:
        entry = self.inv.file(rel)
        if entry is None:
            return False
        if entry.md5 is None:
            self.manifest_gets += 1
            return entry.size == len(data)
        return entry.md5 == md5 and entry.size == len(data)


def plan_push(store, inventory: Inventory, options: PushOptions | None = None,
              bucket: Bucket | None = None, *, delete_one_by_one: bool = False) -> PushPlan:
    """The next push of `store` to the prefix `inventory` describes.

    `bucket` is used for one LIST page when the inventory was never
    reconciled; without it such a plan is an upper bound.
    `delete_one_by_one`: the provider deletes with one DELETE per object.
    """
    options = options or PushOptions()
    planner = _Planner(store, bucket, inventory, options, Reporter())
    plan = PushPlan()
    requests = {"GET": 1, "PUT": 0, "HEAD": 0, "LIST": 0, "DELETE": 0}   # GET: the ownership marker
    marker_known = inventory.file(MARKER_NAME) is not None
    listed_pages = None
    if inventory.reconciled_at is None:
        listed_pages, marker_known = _first_listing(bucket, plan)
    plan.reconcile = planner._reconcile_reason(not marker_known, False)
    if plan.reconcile:
        pages = listed_pages or max(1, math.ceil((inventory.chunk_count() + len(inventory.files())) / Bucket.page_size))
        requests["LIST"] += pages
        # a full listing re-checks every snapshot, so unchanged ones cost nothing but the listing
        planner.result.reconciled = True
    if not marker_known:
        plan.files += 1
        plan.bytes += _size(store.path / MARKER_NAME)
    try:
        plans, plan.snapshots_unchanged = planner._plan()
    except DatastoreError as e:
        plan.notes.append(f"cannot read the local datastore: {e}")
        plans = []
    chunks: set[str] = set()
    for p in plans:
        chunks.update(p.chunks)
        plan.files += len(p.files) + (0 if p.repair else 1)
        plan.bytes += p.bytes
    plan.snapshots = len(plans)
    plan.chunks = len(chunks)
    requests["PUT"] = plan.objects
    requests["GET"] += planner.manifest_gets
    for name, why in planner.result.snapshots_failed:
        plan.notes.append(f"snapshot {name} will fail: {why}")
    if options.remove_vanished:
        _plan_removal(planner, plan, requests, delete_one_by_one)
    plan.requests = requests
    return plan


def _first_listing(bucket: Bucket | None, plan: PushPlan) -> tuple[int | None, bool]:
    """One LIST page of a prefix the inventory knows nothing of: (LIST
    requests the run's full listing makes, whether the marker is there)."""
    if bucket is None:
        plan.exact = False
        plan.notes.append("first run: the bucket prefix was not listed, so the figures are an upper bound")
        return None, False
    page = list(itertools.islice(bucket.list_info(""), bucket.page_size))
    if not page:
        plan.notes.append("first run: the bucket prefix is empty, everything is uploaded")
        return 1, False
    plan.exact = False
    more = len(page) >= bucket.page_size
    count = f"at least {len(page):,}" if more else f"{len(page):,}"
    plan.notes.append(f"first run: the bucket prefix already holds {count} objects; the run lists it fully "
                      "and uploads only what is missing, so the figures are an upper bound")
    return (2 if more else 1), any(info.rel == MARKER_NAME for info in page)


def _plan_removal(planner: _Planner, plan: PushPlan, requests: dict, one_by_one: bool) -> None:
    """remove-vanished: the snapshots on the remote, in the job's scope, gone locally."""
    local = {ref.rel_dir for ref in planner._local_snapshots()}
    vanished = [rd for rd, s in planner._remote_snapshots().items()
                if planner.scope.contains_path(s) and rd not in local]
    if not vanished:
        return
    plan.snapshots_vanished = len(vanished)
    manifests = len(vanished)
    others = sum(len(planner.inv.files(rd + "/")) for rd in vanished) - manifests
    if one_by_one:
        requests["DELETE"] += manifests + others
    else:
        requests["DELETE"] += math.ceil(manifests / Bucket.page_size) + math.ceil(max(others, 0) / Bucket.page_size)
    plan.notes.append(f"{len(vanished)} vanished snapshot(s) are removed from the remote; the chunks only they "
                      "used are found and deleted during the run (not counted here)")


def _size(path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# -- pull -------------------------------------------------------------------------------------

@dataclass
class PullPlan:
    snapshots: int = 0                  # snapshots the run downloads
    snapshots_unchanged: int = 0        # already local (the run GETs their manifest to compare)
    snapshots_skipped: int = 0          # older than the newest local one of their group, or beyond transfer-last
    snapshots_vanished: int = 0         # local snapshots gone from the bucket (remove-vanished)
    files: int = 0                      # snapshot files to download (manifests, indexes, blobs)
    chunks: int = 0                     # chunk objects to download (at most)
    chunks_local: int = 0               # chunks of the bucket this datastore already has
    bytes: int = 0                      # bytes to download (egress)
    listed_objects: int = 0             # what the plan's listing saw
    listed_bytes: int = 0
    requests: dict = field(default_factory=dict)   # RequestCounters kind -> count, the run's
    exact: bool = True                  # False: chunks and bytes are an upper bound
    notes: list[str] = field(default_factory=list)

    @property
    def objects(self) -> int:
        return self.files + self.chunks


def plan_pull(bucket: Bucket, store, scope: Scope, *, transfer_last: int | None = None,
              remove_vanished: bool = False) -> PullPlan:
    """What the next pull of `bucket`'s prefix into `store` downloads, from one listing of
    the prefix (LIST only: no object is read).

    Which chunks a snapshot needs is written in its indexes, which only a GET reads: the
    plan counts every chunk of the bucket the datastore lacks, an upper bound that is exact
    when the new snapshots use them all (a first pull of a whole prefix, unless the bucket
    holds chunks no snapshot uses any more).
    """
    plan = PullPlan()
    remote_chunks: dict[str, int] = {}
    dirs: dict[str, dict[str, int]] = {}
    start = "".join(f"ns/{p}/" for p in scope.ns.split("/") if p)
    top: dict[str, int] = {}           # the run lists the prefix per top-level directory
    for info in bucket.list_info(""):
        plan.listed_objects += 1
        plan.listed_bytes += info.size
        digest = parse_chunk_rel(info.rel)
        if digest is not None:
            remote_chunks[digest] = info.size
            continue
        if info.rel.startswith(start) and "/" in info.rel[len(start):]:
            d = info.rel[len(start):].split("/", 1)[0]
            top[d] = top.get(d, 0) + 1
        parsed = parse_snapshot_file(info.rel)
        if parsed and scope.contains_path(parsed[0]):
            dirs.setdefault(parsed[0].rel_dir, {})[parsed[1]] = info.size
    remote = {rd: files for rd, files in dirs.items() if MANIFEST_NAME in files}
    todo = sorted(remote, key=lambda rd: (parse_snapshot_dir(rd).time, rd))
    newest: dict[str, int] = {}
    local = store.list_snapshots(scope.ns, recursive=True)
    for ref in local:
        if ref.finished:
            newest[ref.group_rel_dir] = max(newest.get(ref.group_rel_dir, 0), ref.time)
    older = {rd for rd in todo if not (store.path / rd / MANIFEST_NAME).is_file()
             and parse_time(parse_snapshot_dir(rd).time) < newest.get(rd.rsplit("/", 1)[0], 0)}
    todo = [rd for rd in todo if rd not in older]
    if transfer_last:
        groups: dict[str, list] = {}
        for rd in todo:
            groups.setdefault(rd.rsplit("/", 1)[0], []).append(rd)
        keep = {rd for g in groups.values() for rd in g[-transfer_last:]}
        todo = [rd for rd in todo if rd in keep]
    plan.snapshots_skipped = len(remote) - len(todo)
    gets = 0
    for rd in todo:
        files = remote[rd]
        gets += 1                                   # the manifest, to compare it with the local one
        local_manifest = store.path / rd / MANIFEST_NAME
        if local_manifest.is_file() and local_manifest.stat().st_size == files[MANIFEST_NAME]:
            plan.snapshots_unchanged += 1
            continue
        plan.snapshots += 1
        names = [n for n in files if n not in LOCAL_ONLY_FILES]
        plan.files += len(names)
        plan.bytes += sum(files[n] for n in names)
        gets += len(names) - 1
    if plan.snapshots:
        missing = [d for d in remote_chunks if not store.chunks.exists(d)]
        plan.chunks_local = len(remote_chunks) - len(missing)
        plan.chunks = len(missing)
        plan.bytes += sum(remote_chunks[d] for d in missing)
        gets += len(missing)
        if missing:
            plan.exact = False
            plan.notes.append(
                f"chunks: at most the {len(missing):,} chunks of the bucket this datastore lacks "
                f"({plan.chunks_local:,} it has already); which of them the new snapshots use is in their "
                "indexes, which only downloading them tells, so chunks, bytes and GETs are an upper bound")
    elif remote_chunks:
        plan.chunks_local = sum(1 for d in remote_chunks if store.chunks.exists(d))
    if any(rd not in remote for rd in dirs):
        plan.notes.append(f"{sum(1 for rd in dirs if rd not in remote)} snapshot(s) in the bucket have no manifest "
                          "(unfinished or damaged): the run does not download them")
    if not remote and remote_chunks and not scope.ns:
        plan.notes.append(f"the bucket prefix holds {len(remote_chunks):,} chunks but no snapshot manifest: "
                          "the run downloads nothing and warns")
    lists = 1 + sum(max(1, math.ceil(n / Bucket.page_size)) for d, n in top.items() if not d.startswith(".chunks"))
    if not remote and not scope.ns:
        lists += 1                                  # the run looks into .chunks/ once
    if remove_vanished:
        plan.snapshots_vanished = sum(1 for ref in local if ref.finished and scope.contains(
            ref.ns, ref.backup_type, ref.backup_id) and ref.rel_dir not in remote)
    plan.requests = {"GET": gets, "PUT": 0, "HEAD": 0, "LIST": lists, "DELETE": 0}
    return plan
