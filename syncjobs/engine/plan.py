"""What the next push will upload and which requests it will make, before it runs.

The plan runs the push's own planning (push._Pusher) against the local
inventory, so plan and run agree on what is missing. It touches the bucket
at most once: one LIST page when the inventory has never been reconciled
(first run), to tell an empty prefix (the plan is exact) from one that
already holds objects (the run's full listing will find some of them there,
so the plan is an upper bound).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from datastores.engine.errors import DatastoreError
from datastores.engine.report import Reporter

from .bucket import Bucket
from .inventory import Inventory
from .push import PushOptions, _Pusher
from .scope import MARKER_NAME


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
