"""UPIDs as PBS writes them (docs/DESIGN.md §4), without Django.

UPID:<node>:<pid 8 hex>:<pstart 8 hex>:<task id 8 hex>:<start epoch 8 hex>:<worker type>:<worker id>:<user>:
"""
import itertools
import os
import re
import threading
from dataclasses import dataclass

_counter = itertools.count()
_counter_lock = threading.Lock()

UPID_RE = re.compile(
    r"^UPID:(?P<node>[A-Za-z0-9_.-]+):(?P<pid>[0-9A-F]{8}):(?P<pstart>[0-9A-F]{8,9}):"
    r"(?P<task_id>[0-9A-F]{8}):(?P<starttime>[0-9A-F]{8}):(?P<worker_type>[A-Za-z0-9_-]+):"
    r"(?P<worker_id>[^:]*):(?P<user>[^:]+):$"
)


def process_start_ticks() -> int:
    """Start time of this process in clock ticks since boot (/proc/self/stat field 22)."""
    try:
        with open("/proc/self/stat") as f:
            # The command name may contain spaces; fields after ')' are fixed.
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[19])
    except (OSError, IndexError, ValueError):
        return 0


def escape_worker_id(worker_id: str) -> str:
    """Colons separate UPID fields and a UPID is a URL path segment: escape ':' and '/'
    the systemd way, as PBS does."""
    return worker_id.replace("\\", "\\x5c").replace(":", "\\x3a").replace("/", "\\x2f")


def unescape_worker_id(text: str) -> str:
    return text.replace("\\x3a", ":").replace("\\x2f", "/").replace("\\x5c", "\\")


@dataclass(frozen=True)
class Upid:
    node: str
    pid: int
    pstart: int
    task_id: int
    starttime: int
    worker_type: str
    worker_id: str
    user: str

    def __str__(self) -> str:
        return (
            f"UPID:{self.node}:{self.pid:08X}:{self.pstart:08X}:{self.task_id:08X}:"
            f"{self.starttime:08X}:{self.worker_type}:{escape_worker_id(self.worker_id)}:{self.user}:"
        )


def new_upid(node: str, worker_type: str, worker_id: str, user: str, starttime: int) -> Upid:
    with _counter_lock:
        task_id = next(_counter) & 0xFFFFFFFF
    return Upid(node, os.getpid(), process_start_ticks(), task_id, starttime, worker_type, worker_id, user)


def parse_upid(text: str) -> Upid:
    m = UPID_RE.match(text)
    if not m:
        raise ValueError(f"invalid UPID '{text}'")
    return Upid(
        node=m["node"], pid=int(m["pid"], 16), pstart=int(m["pstart"], 16),
        task_id=int(m["task_id"], 16), starttime=int(m["starttime"], 16),
        worker_type=m["worker_type"], worker_id=unescape_worker_id(m["worker_id"]), user=m["user"],
    )
