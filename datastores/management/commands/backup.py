import os

from datastores.cliutil import load_key_or_exit, progress_hook, store_or_exit
from datastores.engine.backup import parse_archive_specs
from datastores.engine.datastore import validate_backup_id, validate_backup_type, validate_ns
from datastores.engine.errors import DatastoreError
from pbsweb.cli import BaseCommand, finish_task, usage_error
from pbsweb.worker import run


class Command(BaseCommand):
    help = ("Back up directories (NAME.tar:DIR) and files or block devices (NAME.img:PATH) into a new "
            "snapshot: `backup STORE --type host --id ID NAME.tar:PATH… [--ns NS] [--keyfile F] "
            "[--backup-time EPOCH]`. A missing namespace is created.")

    def add_arguments(self, parser):
        parser.add_argument("store")
        parser.add_argument("archives", nargs="+", metavar="NAME.tar:PATH")
        parser.add_argument("--type", dest="backup_type", default="host", help="vm, ct or host")
        parser.add_argument("--id", dest="backup_id", required=True)
        parser.add_argument("--ns", default="")
        parser.add_argument("--keyfile", default=None)
        parser.add_argument("--backup-time", default=None)

    def handle(self, *args, store, archives, backup_type, backup_id, ns, keyfile, backup_time, **opts):
        cfg, eng = store_or_exit(store)
        try:
            validate_backup_type(backup_type, "type")
            validate_backup_id(backup_id, "id")
            validate_ns(ns, "ns")
        except DatastoreError as e:
            raise usage_error(str(e)) from None
        try:
            pairs = parse_archive_specs(archives)
        except DatastoreError as e:
            raise usage_error(str(e)) from None
        if backup_time is not None:
            try:
                backup_time = int(backup_time)
                if not 0 < backup_time < 253402300800:  # up to 9999-12-31, as every time_t can hold
                    raise ValueError
            except ValueError:
                raise usage_error(f"backup-time: {backup_time!r} is not a positive epoch time") from None
        crypt = load_key_or_exit(keyfile) if keyfile else None
        args = {"store": store, "backup_type": backup_type, "backup_id": backup_id, "ns": ns,
                "archives": [[n, os.path.abspath(p)] for n, p in pairs], "backup_time": backup_time}
        group = f"{ns}/" if ns else ""
        task = run("datastores.tasks.backup", "backup", f"{store}:{group}{backup_type}/{backup_id}",
                   "root@pam", args, store=store, inline=True, echo=self.stdout,
                   private={"crypt": crypt, "progress_hook": progress_hook(self.stdout)})
        finish_task(task)
