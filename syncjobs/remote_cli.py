"""`remote content` / `remote restore` on the command line.

The `remote` command belongs to the remotes app; these are its subcommands
through the registry (`registry.extend_command`, syncjobs.apps.SyncJobsConfig.ready)
and are also the standalone commands `remote-content` and `remote-restore`.
"""
import json
import os
from contextlib import contextmanager

from django.core.management.base import CommandError

from datastores.cliutil import load_key_or_exit
from datastores.engine.errors import DatastoreError
from datastores.engine.restore import archive_filename
from pbsweb.cli import add_remote_store, box_table, check_remote_store, finish_task, usage_error
from pbsweb.worker import run
from remotes.engine.client import RequestCounters
from remotes.engine.errors import explain_error
from remotes.models import Remote, record_usage
from syncjobs.engine.asof import AsOfBucket
from syncjobs.engine.bucket import SyncError
from syncjobs.engine.common import fmt_bytes
from syncjobs.engine.recover import parse_as_of
from syncjobs.engine.scope import normalize_ns, ns_rel, parse_snapshot_dir
from syncjobs.remote_content import fetch_snapshot, list_snapshots, make_bucket, store_prefixes


def fmt_size(n: int) -> str:
    return fmt_bytes(n)


def add_content_arguments(parser) -> None:
    parser.add_argument("id", help="remote ID")
    add_remote_store(parser, "prefix in the bucket (default: every datastore in the bucket)", default=None)
    parser.add_argument("--ns", default="")
    parser.add_argument("--as-of", dest="as_of", default=None, metavar="TIME",
                        help="the snapshots as they were then (object versions; needs --remote-store)")
    parser.add_argument("--output-format", choices=["text", "json", "json-pretty"], default="text")


def add_restore_arguments(parser) -> None:
    parser.add_argument("id", help="remote ID")
    parser.add_argument("remote_store", metavar="remote-store", help="prefix in the bucket")
    parser.add_argument("snapshot", help="type/id/time (or ns/…/type/id/time)")
    parser.add_argument("archive", help="e.g. root.tar or disk.img")
    parser.add_argument("target")
    parser.add_argument("--keyfile", default=None)
    parser.add_argument("--ns", default="")
    parser.add_argument("--as-of", dest="as_of", default=None, metavar="TIME",
                        help="read the bucket as it was then (object versions; Object Lock), "
                             "e.g. 2026-11-30T18:00:00Z")


def _as_of(opts):
    """--as-of parsed (None when not given); a bad one is a usage error naming the option."""
    if opts.get("as_of") is None:
        return None
    try:
        return parse_as_of(opts["as_of"])
    except ValueError as e:
        raise usage_error(f"--as-of: {e}") from None


def _remote(remote_id):
    obj = Remote.objects.filter(remote_id=remote_id).first()
    if obj is None:
        raise usage_error(f"id: remote '{remote_id}' does not exist")
    return obj


def _record(obj, counters):
    try:
        record_usage(obj, counters.snapshot())
    except Exception:
        pass


@contextmanager
def _bucket_requests(obj):
    """Counters for a command's S3 requests, recorded at its end; a failure of the
    bucket becomes the command's error (exit 1), explained."""
    counters = RequestCounters()
    try:
        yield counters
    except CommandError:
        raise
    except Exception as e:
        raise CommandError(f"remote {obj.remote_id}: {_s3_error(e, obj)}", returncode=1) from None
    finally:
        _record(obj, counters)


def _s3_error(exc, obj) -> str:
    if isinstance(exc, SyncError):
        return str(exc)
    try:
        return explain_error(exc, obj.config())
    except Exception:
        return f"{type(exc).__name__}: {exc}"


def snapshot_json(s, prefix: str) -> dict:
    return {"remote-store": prefix, "ns": s.ns, "backup-type": s.backup_type, "backup-id": s.backup_id,
            "backup-time": s.time, "snapshot": s.name, "path": s.rel_dir,
            "files": [{"filename": f.filename, "size": f.size, "stored-size": f.stored_size,
                       "crypt-mode": f.crypt_mode} for f in s.files],
            "size": s.size, "stored-size": s.stored_size, "encrypted": s.encrypted,
            "fingerprint": s.key_fingerprint, "notes": s.notes}


def do_content(stdout, opts) -> None:
    check_remote_store(opts)
    obj = _remote(opts["id"])
    fmt = opts.get("output_format") or "text"
    try:
        ns = normalize_ns(opts.get("ns") or "")
    except ValueError as e:
        raise usage_error(f"--ns: {str(e).removeprefix('ns: ')}") from None
    as_of = _as_of(opts)
    if as_of is not None:
        if not (opts.get("remote_store") or "").strip("/"):
            raise usage_error("--remote-store: required with --as-of (the prefix need not hold its marker now)")
        do_content_as_of(stdout, obj, opts["remote_store"].strip("/"), ns, as_of, fmt)
        return
    with _bucket_requests(obj) as counters:
        client = obj.client(counters=counters)
        stores = store_prefixes(make_bucket(obj, client))
        names = [s.prefix for s in stores]
        wanted = opts.get("remote_store")
        if wanted is not None and wanted.strip("/") not in names:
            raise usage_error(f"--remote-store: the bucket {obj.bucket} has no datastore under prefix '{wanted}' "
                              f"(has: {', '.join(n or '/' for n in names) or 'none'})")
        chosen = [wanted.strip("/")] if wanted is not None else names
        items, problems, warnings = [], [], []
        for prefix in chosen:
            listing = list_snapshots(make_bucket(obj, client, prefix), ns)
            items += [snapshot_json(s, prefix) for s in listing.snapshots]
            problems += listing.unreadable
            warnings += [listing.warning] if listing.warning else []
    if fmt != "text":
        stdout.write(json.dumps(items, indent=2 if fmt == "json-pretty" else None))
        return
    if not stores:
        stdout.write(f"bucket {obj.bucket} holds no datastore (no prefix with a .pbsweb-datastore.json)")
        return
    rows = []
    for it in items:
        snap = ("/".join(filter(None, [it["remote-store"], it["ns"] and "ns:" + it["ns"]])) + ": " if len(chosen) > 1 or it["ns"] else "") + it["snapshot"]
        enc = f"yes ({it['fingerprint']})" if it["encrypted"] else "no"
        rows.append([snap, fmt_size(it["size"]), len(it["files"]), enc])
    stdout.write(box_table(["snapshot", "size", "files", "encrypted"], rows))
    for p in problems:
        stdout.write(f"unreadable manifest: {p}")
    for w in warnings:
        stdout.write(f"warning: {w}")


def do_content_as_of(stdout, obj, prefix: str, ns: str, as_of, fmt: str) -> None:
    """`remote content ID --remote-store P --as-of TIME`: the prefix's snapshots as they were then."""
    with _bucket_requests(obj) as counters:
        bucket = AsOfBucket(make_bucket(obj, obj.client(counters=counters), prefix), as_of)
        try:
            bucket.check()
        except SyncError as e:
            if e.code != "AsOfEmpty":
                raise
            raise usage_error(f"--{e}") from None
        listing = list_snapshots(bucket, ns)
    items = [snapshot_json(s, prefix) for s in listing.snapshots]
    if fmt != "text":
        stdout.write(json.dumps(items, indent=2 if fmt == "json-pretty" else None))
        return
    stdout.write(f"s3://{obj.bucket}/{prefix} as of {as_of.isoformat()}:")
    rows = [[(f"ns:{it['ns']}: " if it["ns"] else "") + it["snapshot"], fmt_size(it["size"]), len(it["files"]),
             f"yes ({it['fingerprint']})" if it["encrypted"] else "no"] for it in items]
    stdout.write(box_table(["snapshot", "size", "files", "encrypted"], rows))
    for p in listing.unreadable:
        stdout.write(f"unreadable manifest: {p}")


def do_restore(stdout, opts) -> None:
    obj = _remote(opts["id"])
    prefix = (opts["remote_store"] or "").strip("/")
    try:
        ns = normalize_ns(opts.get("ns") or "")
    except ValueError as e:
        raise usage_error(f"--ns: {str(e).removeprefix('ns: ')}") from None
    rel_dir = opts["snapshot"].strip("/")
    if ns and not rel_dir.startswith("ns/"):
        rel_dir = ns_rel(ns) + rel_dir
    if parse_snapshot_dir(rel_dir) is None:
        raise usage_error(f"snapshot: '{opts['snapshot']}' is not a snapshot (type/id/YYYY-MM-DDTHH:MM:SSZ)")
    try:
        filename = archive_filename(opts["archive"])
    except DatastoreError as e:
        raise usage_error(f"archive: {e}") from None
    as_of = _as_of(opts)
    try:
        snap, error = fetch_snapshot(obj, prefix, rel_dir, as_of)
    except Exception as e:
        raise CommandError(f"remote {obj.remote_id}: {_s3_error(e, obj)}", returncode=1) from None
    if snap is None:
        raise usage_error(f"--{error}" if error.startswith("as-of") else error)
    names = [f.filename for f in snap.files]
    if filename not in names:
        raise usage_error(f"archive: snapshot {snap.name} has no archive {opts['archive']} "
                          f"(has: {', '.join(n.rsplit('.', 1)[0] for n in names if n.endswith(('.didx', '.fidx')))})")
    target = os.path.abspath(opts["target"])
    if filename.endswith(".didx") and os.path.exists(target):
        if not os.path.isdir(target):
            raise usage_error(f"target: {target} exists and is not a directory")
        if os.listdir(target):
            raise usage_error(f"target: directory {target} is not empty")
    if filename.endswith(".fidx") and os.path.isdir(target):
        raise usage_error(f"target: {target} is a directory; an image restores to a file")
    crypt = None
    if snap.encrypted:
        if not opts.get("keyfile"):
            raise usage_error(f"keyfile: snapshot {snap.name} is encrypted with key {snap.key_fingerprint}; "
                              "give --keyfile")
        crypt = load_key_or_exit(opts["keyfile"])
        if snap.key_fingerprint and crypt.fingerprint != snap.key_fingerprint:
            raise usage_error(f"keyfile: wrong key: snapshot {snap.name} is encrypted with key "
                              f"{snap.key_fingerprint}, the key file has {crypt.fingerprint}")
    args = {"remote": obj.remote_id, "remote_store": prefix, "snapshot": snap.rel_dir,
            "archive": opts["archive"], "target": target}
    if as_of is not None:
        args["as_of"] = as_of.isoformat()
    task = run("syncjobs.tasks.restore_from_remote", "reader", f"{obj.remote_id}:{prefix}:{snap.rel_dir}",
               "root@pam", args,
               inline=True, echo=stdout, private={"crypt": crypt} if crypt is not None else None)
    finish_task(task)


def add_recover_arguments(parser) -> None:
    parser.add_argument("id", help="remote ID")
    parser.add_argument("--as-of", required=True, metavar="TIME",
                        help="the time to go back to, e.g. 2026-11-30T18:00:00Z")
    add_remote_store(parser, "store prefix in the bucket (see `remote content ID`)", metavar="PREFIX")


def do_recover(stdout, opts) -> None:
    """`remote recover ID --as-of TIME --remote-store P`: a task, its log streamed."""
    check_remote_store(opts)
    obj = _remote(opts["id"])
    prefix = (opts["remote_store"] or "").strip().strip("/")
    if not prefix:
        raise usage_error("--remote-store: required, the store prefix in the bucket (see `remote content ID`)")
    try:
        when = parse_as_of(opts["as_of"])
    except ValueError as e:
        raise usage_error(f"--as-of: {e}") from None
    task = run("syncjobs.tasks.recover_remote", "s3-recover", f"{obj.remote_id}:{prefix}", "root@pam",
               {"remote": obj.remote_id, "remote_store": prefix, "as_of": when.isoformat()},
               inline=True, echo=stdout)
    finish_task(task)


def add_subcommands(sub) -> None:
    """`remote content|restore|recover`: parsers added to the remotes app's `remote` command, which
    finds this module through the registry (syncjobs.apps) and runs SUBCOMMANDS[action](stdout, opts)."""
    add_content_arguments(sub.add_parser("content", help="what the bucket holds (manifests only)"))
    add_restore_arguments(sub.add_parser("restore", help="restore one archive straight from the bucket"))
    add_recover_arguments(sub.add_parser(
        "recover", help="make a store prefix read as it did at a time (versions kept by Object Lock)"))


SUBCOMMANDS = {"content": do_content, "restore": do_restore, "recover": do_recover}
