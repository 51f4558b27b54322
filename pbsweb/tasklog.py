"""Task log files (docs/DESIGN.md §4), without Django.

One file per task; each line is `<RFC3339 time>: <message>`; the last line is
`TASK OK`, `TASK WARNINGS: <n>` or `TASK ERROR: <message>`. Readers follow a
running task by byte offset.
"""
import os
from datetime import datetime, timezone
from pathlib import Path

TAIL_BYTES = 64 * 1024


def log_path(log_dir: Path, upid: str, pstart: int) -> Path:
    # Spread files over 256 directories as PBS does (by the low byte of pstart).
    return Path(log_dir) / f"{pstart & 0xFF:02X}" / upid


def rfc3339_now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


class TaskLogWriter:
    """Appends timestamped lines; each line is flushed so readers see it at once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8", buffering=1)

    def write(self, message: str) -> str:
        lines = str(message).splitlines() or [""]
        stamp = rfc3339_now()
        text = "".join(f"{stamp}: {line}\n" for line in lines)
        self._file.write(text)
        return text

    def close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


def read_from(path: Path, offset: int, max_bytes: int = 1024 * 1024) -> tuple[bytes, int]:
    """Bytes of the log from `offset`, only whole lines, and the next offset."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, offset))
            data = f.read(max_bytes)
    except FileNotFoundError:
        return b"", offset
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n")
        data = data[: cut + 1] if cut >= 0 else b""
    return data, offset + len(data)


def read_tail(path: Path, max_bytes: int = TAIL_BYTES) -> tuple[bytes, int, int]:
    """The last whole lines of the log: (data, start offset, end offset)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            f.seek(start)
            data = f.read(size - start)
    except FileNotFoundError:
        return b"", 0, 0
    if start > 0:
        nl = data.find(b"\n")
        data = data[nl + 1:] if nl >= 0 else b""
        start = size - len(data)
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
    return data, start, start + len(data)


def final_status(path: Path) -> str | None:
    """The status from the last line (`OK`, `WARNINGS: n`, the error) or None if running."""
    data, _, _ = read_tail(path, 4096)
    lines = data.decode("utf-8", "replace").splitlines()
    if not lines:
        return None
    last = lines[-1].split(": ", 1)[-1]
    if last == "TASK OK":
        return "OK"
    for prefix in ("TASK WARNINGS: ", "TASK ERROR: "):
        if last.startswith(prefix):
            return last[len("TASK "):] if prefix.startswith("TASK WARN") else last[len(prefix):]
    return None


def read_lines(path: Path, start: int, limit: int) -> tuple[list[str], int]:
    """Lines `start` .. `start + limit` (0-based) and the total line count, streaming
    the file so a huge log costs no more memory than the lines returned."""
    lines: list[str] = []
    total = 0
    try:
        with open(path, "rb") as f:
            for total, raw in enumerate(f, 1):
                if start < total <= start + limit:
                    lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
    except FileNotFoundError:
        pass
    return lines, total
