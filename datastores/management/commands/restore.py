import os

from datastores.cliutil import load_key_or_exit, progress_hook, store_or_exit
from datastores.engine.datastore import validate_ns
from datastores.engine.errors import DatastoreError
from datastores.engine.restore import archive_filename
from pbsweb.cli import BaseCommand, finish_task, usage_error
from pbsweb.worker import run


class Command(BaseCommand):
    help = ("Restore an archive of a snapshot: `restore STORE SNAPSHOT ARCHIVE TARGET [--keyfile F] [--ns NS]` "
            "(SNAPSHOT like host/web01/2026-11-26T03:00:00Z; a .tar archive restores into the directory "
            "TARGET, an .img archive into the file or block device TARGET).")

    def add_arguments(self, parser):
        parser.add_argument("store")
        parser.add_argument("snapshot")
        parser.add_argument("archive")
        parser.add_argument("target")
        parser.add_argument("--keyfile", default=None)
        parser.add_argument("--ns", default="")

    def handle(self, *args, store, snapshot, archive, target, keyfile, ns, **opts):
        cfg, eng = store_or_exit(store)
        try:
            validate_ns(ns, "ns")
            ref = eng.find_snapshot(snapshot, ns)
        except DatastoreError as e:
            raise usage_error(f"snapshot: {e}" if not str(e).startswith(("snapshot", "ns")) else str(e)) from None
        if not ref.finished:
            raise usage_error(f"snapshot: {ref} is unfinished (no manifest)")
        try:
            filename = archive_filename(archive)
            manifest = eng.load_manifest(ref)
        except DatastoreError as e:
            raise usage_error(str(e)) from None
        if manifest.file(filename) is None:
            have = ", ".join(n for n in manifest.filenames)
            raise usage_error(f"archive: snapshot {ref.name} has no archive {archive} (has: {have})")
        target = os.path.abspath(target)
        if filename.endswith(".didx") and os.path.exists(target):
            if not os.path.isdir(target):
                raise usage_error(f"target: {target} exists and is not a directory")
            if os.listdir(target):
                raise usage_error(f"target: directory {target} is not empty")
        if filename.endswith(".fidx") and os.path.isdir(target):
            raise usage_error(f"target: {target} is a directory; an image restores to a file")
        crypt = None
        if manifest.encrypted:
            if not keyfile:
                raise usage_error(f"keyfile: snapshot {ref.name} is encrypted with key "
                                  f"{manifest.key_fingerprint}; give --keyfile")
            crypt = load_key_or_exit(keyfile)
            if manifest.key_fingerprint and crypt.fingerprint != manifest.key_fingerprint:
                raise usage_error(f"keyfile: wrong key: snapshot {ref.name} is encrypted with key "
                                  f"{manifest.key_fingerprint}, the key file has {crypt.fingerprint}")
        task = run("datastores.tasks.restore", "reader", f"{store}:{ref.name}", "root@pam",
                   {"store": store, "snapshot": ref.name, "ns": ns, "archive": archive,
                    "target": target}, store=store, inline=True, echo=self.stdout,
                   private={"crypt": crypt, "progress_hook": progress_hook(self.stdout)})
        finish_task(task)
