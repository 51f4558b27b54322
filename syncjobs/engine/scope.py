"""What a sync job covers: namespace, depth, PBS group filters, and parsing of
datastore-relative snapshot paths (`[ns/a/[ns/b/…]]<type>/<id>/<time>`)."""
from __future__ import annotations

import re
from dataclasses import dataclass

BACKUP_TYPES = ("vm", "ct", "host")
_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
_NS_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
MANIFEST_NAME = "index.json.blob"
MARKER_NAME = ".pbsweb-datastore.json"
LOCAL_ONLY_FILES = ("catalog.blob",)


@dataclass(frozen=True)
class SnapshotPath:
    ns: str            # "a/b" ("" = root)
    backup_type: str
    backup_id: str
    time: str          # YYYY-MM-DDTHH:MM:SSZ

    @property
    def rel_dir(self) -> str:
        return ns_rel(self.ns) + f"{self.backup_type}/{self.backup_id}/{self.time}"

    @property
    def name(self) -> str:
        """As PBS logs it: `[ns/a/…]host/web01/2026-…`."""
        return self.rel_dir

    @property
    def group(self) -> str:
        return f"{self.backup_type}/{self.backup_id}"


def ns_rel(ns: str) -> str:
    """'a/b' -> 'ns/a/ns/b/' ('' -> '')."""
    return "".join(f"ns/{p}/" for p in ns.split("/") if p)


def normalize_ns(ns: str | None) -> str:
    ns = (ns or "").strip("/")
    for p in ns.split("/") if ns else ():
        if not _NS_RE.match(p):
            raise ValueError(f"ns: invalid namespace component {p!r}")
    return ns


def parse_snapshot_dir(rel_dir: str) -> SnapshotPath | None:
    """Parse `[ns/a/…]<type>/<id>/<time>`; None if it is not a snapshot path."""
    parts = rel_dir.strip("/").split("/")
    ns_parts = []
    while len(parts) > 3 and parts[0] == "ns":
        ns_parts.append(parts[1])
        parts = parts[2:]
    if len(parts) != 3:
        return None
    t, i, tm = parts
    if t not in BACKUP_TYPES or not _ID_RE.match(i) or not _TIME_RE.match(tm):
        return None
    return SnapshotPath("/".join(ns_parts), t, i, tm)


def parse_snapshot_file(rel: str) -> tuple[SnapshotPath, str] | None:
    """Split `<snapshot dir>/<file>`; None for anything else."""
    d, _, f = rel.rpartition("/")
    snap = parse_snapshot_dir(d) if d else None
    return (snap, f) if snap and f else None


def ns_in_scope(ns: str, job_ns: str, max_depth: int | None) -> bool:
    """True if namespace `ns` is `job_ns` or below it, within max_depth levels."""
    job = [p for p in job_ns.split("/") if p]
    mine = [p for p in ns.split("/") if p]
    if mine[:len(job)] != job:
        return False
    return max_depth is None or len(mine) - len(job) <= max_depth


@dataclass(frozen=True)
class GroupFilter:
    include: bool
    kind: str           # "type" | "group" | "regex"
    value: str
    regex: re.Pattern | None = None

    def matches(self, backup_type: str, backup_id: str) -> bool:
        if self.kind == "type":
            return backup_type == self.value
        if self.kind == "group":
            return f"{backup_type}/{backup_id}" == self.value
        return self.regex.search(f"{backup_type}/{backup_id}") is not None


def parse_group_filter(specs) -> list[GroupFilter]:
    """PBS syntax: `[include:|exclude:](type:<t>|group:<t>/<id>|regex:<re>)`."""
    out = []
    for spec in specs or ():
        s = spec.strip()
        include = True
        if s.startswith("include:"):
            s = s[len("include:"):]
        elif s.startswith("exclude:"):
            include, s = False, s[len("exclude:"):]
        kind, sep, value = s.partition(":")
        if not sep or kind not in ("type", "group", "regex") or not value:
            raise ValueError(f"group-filter: invalid filter {spec!r} "
                             f"(expected [include:|exclude:]type:<t>|group:<t>/<id>|regex:<re>)")
        if kind == "type" and value not in BACKUP_TYPES:
            raise ValueError(f"group-filter: unknown backup type {value!r} in {spec!r}")
        regex = None
        if kind == "regex":
            try:
                regex = re.compile(value)
            except re.error as e:
                raise ValueError(f"group-filter: bad regex in {spec!r}: {e}") from None
        out.append(GroupFilter(include, kind, value, regex))
    return out


def group_selected(filters: list[GroupFilter], backup_type: str, backup_id: str) -> bool:
    """Included when there is no include filter or one matches; then dropped
    if any exclude filter matches (PBS semantics)."""
    includes = [f for f in filters if f.include]
    if includes and not any(f.matches(backup_type, backup_id) for f in includes):
        return False
    return not any(f.matches(backup_type, backup_id) for f in filters if not f.include)


@dataclass
class Scope:
    ns: str = ""
    max_depth: int | None = None
    group_filter: tuple = ()

    def __post_init__(self):
        self.ns = normalize_ns(self.ns)
        self._filters = parse_group_filter(self.group_filter)

    def contains(self, ns: str, backup_type: str, backup_id: str) -> bool:
        return ns_in_scope(ns, self.ns, self.max_depth) and \
            group_selected(self._filters, backup_type, backup_id)

    def contains_path(self, snap: SnapshotPath) -> bool:
        return self.contains(snap.ns, snap.backup_type, snap.backup_id)
