"""Shared helpers of the datastores management commands."""
import getpass
import os
import shutil
import sys

from datastores.engine.crypto import keyfile_info, load_keyfile
from datastores.engine.errors import DatastoreError
from datastores.services import FieldError, get_store, open_store
from pbsweb.cli import usage_error

PASSPHRASE_ENV = "PBSWEB_KEY_PASSPHRASE"


def store_or_exit(name):
    try:
        cfg = get_store(name)
        return cfg, open_store(cfg)
    except FieldError as e:
        raise usage_error(str(e)) from None


def read_passphrase(prompt="Encryption Key Password: ", confirm=False):
    value = os.environ.get(PASSPHRASE_ENV)
    if value is not None:
        return value
    if not sys.stdin.isatty():
        raise usage_error(f"passphrase: set {PASSPHRASE_ENV} or run on a terminal to be prompted")
    value = getpass.getpass(prompt)
    if confirm and getpass.getpass("Verify Password: ") != value:
        raise usage_error("passphrase: the passwords do not match")
    return value


def load_key_or_exit(path, field="keyfile"):
    """Load a key file given on the command line; passphrase from env or prompt."""
    try:
        info = keyfile_info(path)
    except DatastoreError as e:
        raise usage_error(f"{field}: {e}") from None
    except OSError as e:  # a directory, a name too long, unreadable
        raise usage_error(f"{field}: cannot read {path!r}: {e.strerror}") from None
    passphrase = read_passphrase() if info["kdf"] != "none" else None
    try:
        return load_keyfile(path, passphrase)
    except DatastoreError as e:
        raise usage_error(f"{field}: {e}") from None


class ProgressBar:
    """A one-line progress bar on a terminal (redrawn in place; cleared before log lines)."""

    def __init__(self, stream):
        self.stream = stream
        self.shown = False

    def __call__(self, fraction, text=""):
        width = shutil.get_terminal_size((80, 20)).columns
        if fraction is None or fraction >= 1.0:
            if self.shown:
                self.stream.write("\r" + " " * (width - 1) + "\r")
                self.stream.flush()
                self.shown = False
            return
        bar_w = max(10, min(40, width - 30))
        filled = int(bar_w * max(0.0, min(1.0, fraction)))
        line = f"[{'#' * filled}{'.' * (bar_w - filled)}] {fraction * 100:5.1f}% {text}"[: width - 1]
        self.stream.write("\r" + line.ljust(width - 1))
        self.stream.flush()
        self.shown = True


def progress_hook(stdout):
    """A progress hook when stdout is a terminal, else None."""
    try:
        isatty = stdout.isatty()
    except (AttributeError, ValueError):
        isatty = False
    return ProgressBar(stdout._out if hasattr(stdout, "_out") else stdout) if isatty else None
