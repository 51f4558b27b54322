"""Own remote retention (docs/DESIGN.md §3 invariant 8): a push job's keep options applied to
the snapshots in its bucket prefix, each group as PBS prunes it (datastores/engine/prune.py, the
one prune engine). The push removes what this marks `remove`; the prune simulator shows the same
marks from the prefix's inventory, without a request.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from datastores.engine.prune import KeepOptions, PruneItem, compute_prune, prune_mark_kept

from .scope import MANIFEST_NAME, Scope, SnapshotPath, parse_snapshot_dir


def snapshot_epoch(snap: SnapshotPath) -> int:
    return int(datetime.strptime(snap.time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp())


def policy_marks(snapshots: dict[str, SnapshotPath], keep: KeepOptions) -> dict[str, str]:
    """{rel_dir: prune mark (keep, remove, ...)} for the snapshots {rel_dir: SnapshotPath}, each
    group (namespace, type, id) marked as PBS prunes it."""
    groups: dict[tuple, list[PruneItem]] = {}
    for rd, snap in snapshots.items():
        groups.setdefault((snap.ns, snap.group), []).append(PruneItem(rd, snapshot_epoch(snap)))
    marks = {}
    for items in groups.values():
        for item, mark in compute_prune(items, keep):
            marks[item.key] = mark
    return marks


@dataclass
class SimulatedSnapshot:
    """One bucket snapshot in the prune simulator (the attributes the local simulator shows)."""
    ns: str
    backup_type: str
    backup_id: str
    name: str          # type/id/time
    rel_dir: str
    time: int          # epoch
    mark: str          # keep, remove, protected, partial

    @property
    def kept(self) -> bool:
        return prune_mark_kept(self.mark)


def bucket_snapshots(inventory, scope: Scope) -> dict[str, SnapshotPath]:
    """{rel_dir: SnapshotPath} of the finished snapshots in the job's scope the inventory knows."""
    out = {}
    for rel in inventory.manifests():
        snap = parse_snapshot_dir(rel[:-len(MANIFEST_NAME) - 1])
        if snap is not None and scope.contains_path(snap):
            out[snap.rel_dir] = snap
    return out


def simulate_remote_prune(inventory, scope: Scope, keep: KeepOptions) -> list[SimulatedSnapshot]:
    """What the remote retention keeps and removes among the bucket's snapshots (from the local
    inventory of the prefix: no request), sorted by group, newest first, as the local simulator."""
    snaps = bucket_snapshots(inventory, scope)
    marks = policy_marks(snaps, keep)
    rows = [SimulatedSnapshot(s.ns, s.backup_type, s.backup_id, f"{s.group}/{s.time}", rd, snapshot_epoch(s),
                              marks[rd]) for rd, s in snaps.items()]
    rows.sort(key=lambda r: (r.ns, r.backup_type, r.backup_id, -r.time))
    return rows
