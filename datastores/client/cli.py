"""`pbsweb-client`: the command line, in the syntax of proxmox-backup-client (DESIGN §8).

Exit codes: 0 done, 1 failed, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import socket
import sys
import threading
import time

from .errors import ClientError
from .repo import RepositoryError, parse_repository

MiB = 1024 * 1024
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?$", re.I)
_UNITS = {"": 1, "B": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
          "KI": 1024, "MI": MiB, "GI": 1024 * MiB, "TI": 1024 ** 4}


class UsageError(Exception):
    """Bad arguments: exit 2 with a line naming the field."""


def parse_rate(text: str) -> float:
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise UsageError(f"rate: {text!r} is not a size per second like 10MiB")
    unit = (m.group(2) or "").upper().rstrip("B")
    return float(m.group(1)) * _UNITS[unit]


# -- output ------------------------------------------------------------------------------

class Output:
    """Text for people (a progress line on a terminal), or one JSON document at the end."""

    def __init__(self, fmt: str):
        self.json = fmt == "json"
        self.tty = sys.stderr.isatty() and not self.json
        self._progress_shown = False
        self._lock = threading.Lock()    # the progress thread and the main thread share the terminal

    def line(self, text: str) -> None:
        if not self.json:
            with self._lock:
                self._clear()
                print(text, flush=True)

    def progress(self, text: str) -> None:
        """A line rewritten in place ("\r", erase) on a terminal; nothing when stderr is piped."""
        if self.tty and text:
            with self._lock:
                sys.stderr.write("\r\x1b[K" + text[:120])
                sys.stderr.flush()
                self._progress_shown = True

    def _clear(self) -> None:
        if self._progress_shown:
            sys.stderr.write("\r\x1b[K")
            self._progress_shown = False

    def result(self, doc, text_lines=()) -> None:
        if self.json:
            print(json.dumps(doc), flush=True)
        else:
            for t in text_lines:
                self.line(t)

    def table(self, headers: list[str], rows: list[list], doc) -> None:
        if self.json:
            print(json.dumps(doc), flush=True)
            return
        cells = [[str(v) for v in r] for r in rows]
        widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        print(fmt.format(*headers))
        print("  ".join("-" * w for w in widths))
        for r in cells:
            print(fmt.format(*r))


def make_reporter(out: Output):
    # The engine's Reporter protocol (log, warn, progress, check_abort) without importing
    # the engine here: `--help` stays fast.
    class CliReporter:
        warnings = 0

        def log(self, msg):
            out.line(msg)

        def warn(self, msg):
            CliReporter.warnings += 1
            out.line(f"WARN: {msg}")

        def progress(self, fraction, text=""):
            out.progress(text)

        def check_abort(self):
            pass

    return CliReporter()


# -- connection ----------------------------------------------------------------------------

def connect(args):
    """(Server, store name) from --repository / PBS_REPOSITORY, PBS_PASSWORD, the fingerprint."""
    from .http import Server  # ssl and http.client load only when a command talks to a server
    try:
        repo = parse_repository(args.repository or os.environ.get("PBS_REPOSITORY", ""))
    except RepositoryError as e:
        raise UsageError(str(e)) from None
    secret = os.environ.get("PBS_PASSWORD")
    if secret is None:
        if not sys.stdin.isatty():
            raise UsageError("password: set PBS_PASSWORD (the password or API token secret)")
        secret = getpass.getpass(f"Password for \"{repo.auth_id}\": ")
    fingerprint = args.fingerprint or os.environ.get("PBS_FINGERPRINT") or None
    return Server(repo, secret, fingerprint), repo.store


def load_key(path):
    if not path:
        return None
    from datastores.engine.crypto import keyfile_info, load_keyfile  # heavy (cryptography): lazy
    from datastores.engine.errors import DatastoreError
    try:
        info = keyfile_info(path)
        passphrase = None
        if info["kdf"] != "none":
            passphrase = os.environ.get("PBS_ENCRYPTION_PASSWORD")
            if passphrase is None:
                if not sys.stdin.isatty():
                    raise UsageError("keyfile: the key is protected; set PBS_ENCRYPTION_PASSWORD")
                passphrase = getpass.getpass("Encryption Key Password: ")
        return load_keyfile(path, passphrase)
    except DatastoreError as e:
        raise UsageError(f"keyfile: {e}") from None
    except OSError as e:
        raise UsageError(f"keyfile: cannot read {path!r}: {e.strerror}") from None


def _q(params: dict) -> str:
    from urllib.parse import urlencode
    params = {k: v for k, v in params.items() if v}
    return "?" + urlencode(params) if params else ""


def _fmt_time(epoch) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)) if epoch else ""


def _size(n) -> str:
    return f"{n / MiB:.1f} MiB" if n is not None else ""


# -- commands --------------------------------------------------------------------------------

def cmd_backup(args, out):
    # The engine's chunker, zstd and BLAKE3 load only for commands that need them.
    from .backup import run_network_backup
    from datastores.engine.backup import parse_archive_specs
    from datastores.engine.errors import DatastoreError
    try:
        archives = parse_archive_specs(args.archives)
    except DatastoreError as e:
        raise UsageError(str(e)) from None
    rate = parse_rate(args.rate) if args.rate else None
    crypt = load_key(args.keyfile)
    server, store = connect(args)
    reporter = make_reporter(out)
    res = run_network_backup(server, store, args.backup_type, args.backup_id, archives, reporter,
                             ns=args.ns or "", crypt=crypt, exclude=args.exclude or (), rate=rate)
    lines = [f"{a['archive']}: {_size(a['size'])}, {a['chunks']} chunks: {a['new']} new "
             f"({_size(a['sent-bytes'])} sent), {a['reused']} reused (not sent)" for a in res.archives]
    speed = res.bytes_read / MiB / res.duration if res.duration else 0
    lines.append(f"backup {res.snapshot} finished: read {_size(res.bytes_read)} in {res.duration:.2f} s "
                 f"({speed:.1f} MiB/s); sent {res.sent_chunks} chunks, {_size(res.sent_bytes)}; "
                 f"reused {res.reused_chunks} chunks")
    out.result(res.to_dict(), lines)
    return 0


def cmd_snapshots(args, out):
    server, store = connect(args)
    data = server.get_json(f"/api2/json/reader/{store}/snapshots" + _q({"ns": args.ns, "group": args.group}))["data"]
    rows = [[d["snapshot"], _size(d["size"]), " ".join(d["files"]), d["owner"] or "",
             "encrypted" if d["encrypted"] else ""] for d in data]
    out.table(["snapshot", "size", "files", "owner", "crypt"], rows, data)
    return 0


def cmd_list(args, out):
    server, store = connect(args)
    data = server.get_json(f"/api2/json/reader/{store}/groups" + _q({"ns": args.ns}))["data"]
    rows = [[f"{d['backup-type']}/{d['backup-id']}", _fmt_time(d["last-backup"]), d["backup-count"],
             d["owner"] or ""] for d in data]
    out.table(["group", "last snapshot", "count", "owner"], rows, data)
    return 0


def cmd_restore(args, out):
    from .restore import ReaderSession
    crypt = load_key(args.keyfile)
    server, store = connect(args)
    with ReaderSession(server, store, args.snapshot, args.ns or "", crypt) as session:
        res = session.restore(args.archive, args.target, make_reporter(out), args.pattern)
    speed = res["bytes"] / MiB / res["duration"] if res["duration"] else 0
    out.result(res, [f"restored {args.snapshot} {args.archive} to {args.target}: {_size(res['bytes'])}, "
                     f"{res['files']} files in {res['duration']:.2f} s ({speed:.1f} MiB/s)"])
    return 0


def cmd_catalog(args, out):
    from .restore import ReaderSession
    crypt = load_key(args.keyfile)
    server, store = connect(args)
    if args.action == "dump":
        with ReaderSession(server, store, args.snapshot, args.ns or "", crypt) as session:
            catalog = session.catalog()
        if out.json:
            out.result(catalog)
        else:
            for archive, entries in catalog.items():
                for path, kind, size, mtime, _mode, _off, link in entries:
                    line = f"{kind} \"{archive}/{path}\""
                    if kind == "f":
                        line += f" {size} {_fmt_time(mtime)}"
                    elif kind == "l":
                        line += f" -> {link}"
                    print(line)
        return 0
    with ReaderSession(server, store, args.snapshot, args.ns or "", crypt) as session:
        blob = session.rebuild_catalog(make_reporter(out))
    server.request("POST", f"/api2/json/backup/{store}/catalog" + _q({"ns": args.ns, "snapshot": args.snapshot}),
                   body=blob)
    out.result({"snapshot": args.snapshot, "catalog-bytes": len(blob)},
               [f"catalog of {args.snapshot} rebuilt ({len(blob)} bytes)"])
    return 0


def cmd_forget(args, out):
    server, store = connect(args)
    res = server.post_json(f"/api2/json/backup/{store}/forget", {"ns": args.ns or "", "snapshot": args.snapshot})
    out.result(res, [f"removed snapshot {res['removed']}"])
    return 0


def cmd_prune(args, out):
    server, store = connect(args)
    doc = {"ns": args.ns or "", "group": args.group, "dry-run": args.dry_run}
    for k in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        v = getattr(args, f"keep_{k}")
        if v is not None:
            doc[f"keep-{k}"] = v
    data = server.post_json(f"/api2/json/backup/{store}/prune", doc)["data"]
    rows = [[d["snapshot"], "keep" if d["keep"] else ("would remove" if args.dry_run else "removed")] for d in data]
    out.table(["snapshot", "action"], rows, data)
    return 0


def cmd_key(args, out):
    from datastores.engine.crypto import create_keyfile
    from datastores.engine.errors import DatastoreError
    passphrase = None
    if args.kdf == "scrypt":
        passphrase = os.environ.get("PBS_ENCRYPTION_PASSWORD")
        if passphrase is None:
            if not sys.stdin.isatty():
                raise UsageError("passphrase: set PBS_ENCRYPTION_PASSWORD or use --kdf none")
            passphrase = getpass.getpass("Encryption Key Password: ")
            if getpass.getpass("Verify Password: ") != passphrase:
                raise UsageError("passphrase: the passwords do not match")
    try:
        fp = create_keyfile(args.file, args.kdf, passphrase)
    except DatastoreError as e:
        raise UsageError(str(e)) from None
    out.result({"path": args.file, "fingerprint": fp}, [f"created key {args.file}, fingerprint {fp}"])
    return 0


def cmd_status(args, out):
    server, store = connect(args)
    d = server.get_json(f"/api2/json/reader/{store}/status")["data"]
    pct = 100 * d["used"] / d["total"] if d["total"] else 0
    out.result(d, [f"datastore {d['store']}: used {_size(d['used'])} of {_size(d['total'])} ({pct:.2f}%), "
                   f"available {_size(d['avail'])}"])
    return 0


# -- arguments -------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"pbsweb-client: error: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--repository", help="[[USER@REALM[!TOKEN]]@]HOST[:PORT]:STORE (or PBS_REPOSITORY)")
    common.add_argument("--fingerprint", help="the server certificate's SHA-256 fingerprint (or PBS_FINGERPRINT)")
    common.add_argument("--ns", default="", help="namespace")
    common.add_argument("--output-format", choices=["text", "json"], default="text")
    keyed = argparse.ArgumentParser(add_help=False)
    keyed.add_argument("--keyfile", help="encryption key file (passphrase from PBS_ENCRYPTION_PASSWORD)")

    p = _Parser(prog="pbsweb-client", description="Back up to and restore from a pbsweb server.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    b = sub.add_parser("backup", parents=[common, keyed], help="back up directories and images")
    b.add_argument("archives", nargs="+", metavar="NAME.tar:PATH | NAME.img:FILE")
    b.add_argument("--backup-type", default="host", choices=["host", "vm", "ct"])
    b.add_argument("--backup-id", default=socket.gethostname().split(".")[0])
    b.add_argument("--exclude", action="append", metavar="GLOB", help="skip matching paths (repeatable)")
    b.add_argument("--rate", help="bandwidth limit, e.g. 10MiB (per second)")
    b.set_defaults(func=cmd_backup)

    s = sub.add_parser("snapshots", parents=[common], help="list snapshots")
    s.add_argument("group", nargs="?", default="", help="TYPE/ID")
    s.set_defaults(func=cmd_snapshots)

    sub.add_parser("list", parents=[common], help="list backup groups").set_defaults(func=cmd_list)

    r = sub.add_parser("restore", parents=[common, keyed], help="restore an archive")
    r.add_argument("snapshot", help="TYPE/ID/TIME")
    r.add_argument("archive", help="NAME.tar or NAME.img")
    r.add_argument("target", help="directory (or file for an image); must not exist or be empty")
    r.add_argument("--pattern", help="restore only paths matching this glob")
    r.set_defaults(func=cmd_restore)

    c = sub.add_parser("catalog", parents=[common, keyed], help="show or rebuild a snapshot's file list")
    c.add_argument("action", choices=["dump", "rebuild"])
    c.add_argument("snapshot")
    c.set_defaults(func=cmd_catalog)

    f = sub.add_parser("forget", parents=[common], help="remove a snapshot")
    f.add_argument("snapshot")
    f.set_defaults(func=cmd_forget)

    pr = sub.add_parser("prune", parents=[common], help="remove a group's snapshots by keep rules")
    pr.add_argument("group", help="TYPE/ID")
    for k in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        pr.add_argument(f"--keep-{k}", type=int, metavar="N")
    pr.add_argument("--dry-run", action="store_true")
    pr.set_defaults(func=cmd_prune)

    k = sub.add_parser("key", help="encryption keys")
    ksub = k.add_subparsers(dest="key_command", required=True, parser_class=_Parser)
    kc = ksub.add_parser("create", help="create a key file")
    kc.add_argument("file")
    kc.add_argument("--kdf", choices=["scrypt", "none"], default="scrypt")
    kc.add_argument("--output-format", choices=["text", "json"], default="text")
    kc.set_defaults(func=cmd_key)

    sub.add_parser("status", parents=[common], help="datastore usage").set_defaults(func=cmd_status)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = Output(getattr(args, "output_format", "text"))
    try:
        return args.func(args, out)
    except UsageError as e:
        print(f"pbsweb-client: error: {e}", file=sys.stderr)
        return 2
    except ClientError as e:
        print(f"pbsweb-client: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pbsweb-client: interrupted", file=sys.stderr)
        return 1
    except BrokenPipeError:     # `pbsweb-client snapshots | head`: the reader went away
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:  # engine errors (DatastoreError, CorruptionError, OSError) name what failed
        if any(c.__name__ == "DatastoreError" for c in type(e).__mro__) or isinstance(e, OSError):
            print(f"pbsweb-client: error: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
