"""Files under the data directory: the one check for names that become file names, and its modes.

Every ID that comes from a request (a remote ID, a datastore name, ...) and becomes part of a file
path goes through `safe_id` first, so `../x`, `a/b` or `.hidden` can never leave or hide in the
directory meant for it. The engines check their own names (snapshot IDs, namespaces) with the same
rule; they cannot import this module (docs/DESIGN.md §1 and §6).
"""
import os
import re
from pathlib import Path

from django.conf import settings

from pbsweb.errors import UserError

SAFE_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
MAX_ID_LEN = 128


def safe_id(field: str, value) -> str:
    """`value` if it is safe as one file name component, else UserError naming `field`."""
    if not isinstance(value, str) or not value:
        raise UserError(field, "must not be empty")
    if len(value) > MAX_ID_LEN or not SAFE_ID_RE.match(value):
        raise UserError(field, f"{value!r} is not valid (letters, digits, '_', '.' and '-'; "
                               f"not starting with '.' or '-'; at most {MAX_ID_LEN} characters)")
    return value


def data_file(directory: str, field: str, name: str, suffix: str = "") -> Path:
    """DATA_DIR/<directory>/<name><suffix>, with `name` checked by `safe_id`."""
    return Path(settings.DATA_DIR) / directory / f"{safe_id(field, name)}{suffix}"


def overlaps_data_dir(path) -> str | None:
    """Why `path` may not hold a datastore: it lies inside the data directory (database, keys,
    task logs) or contains it. None if it is elsewhere. Symlinks are resolved on both sides."""
    real = Path(os.path.realpath(path))
    data = Path(os.path.realpath(settings.DATA_DIR))
    if real == data or data in real.parents:
        return f"{path} is inside the data directory {data} (database, keys and task logs)"
    if real in data.parents:
        return f"{path} contains the data directory {data} (database, keys and task logs)"
    return None


# Files that hold secrets or the whole configuration: owner only.
PRIVATE_FILES = ("db.sqlite3", "db.sqlite3-wal", "db.sqlite3-shm", "secret.key", "django-secret.key",
                 "proxy.key")
PRIVATE_DIRS = ("keys", "remotes", "restore-keys")


def secure_data_dir() -> None:
    """Data directory 0700, the database, keys and their folders owner-only (first run and start).

    Files created later inherit nothing from here, but nobody else can reach them through a
    0700 directory."""
    data = Path(settings.DATA_DIR)
    data.mkdir(parents=True, exist_ok=True)
    _chmod(data, 0o700)
    db_name = settings.DATABASES["default"].get("NAME")
    sqlite = [Path(str(db_name) + s) for s in ("", "-wal", "-shm")] if "sqlite" in settings.DATABASES[
        "default"]["ENGINE"] else []
    for path in [data / name for name in PRIVATE_FILES] + sqlite:
        _chmod(path, 0o600)
    for name in PRIVATE_DIRS:
        folder = data / name
        _chmod(folder, 0o700)
        if folder.is_dir():
            for child in folder.iterdir():
                if child.is_file():
                    _chmod(child, 0o600)


def _chmod(path: Path, mode: int) -> None:
    try:
        if path.exists() and path.stat().st_mode & 0o777 != mode:
            os.chmod(path, mode)
    except PermissionError:  # not ours (a shared mount): nothing we can do here
        pass
