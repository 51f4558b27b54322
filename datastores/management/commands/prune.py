from datastores.cliutil import store_or_exit
from datastores.engine.datastore import validate_backup_id, validate_backup_type, validate_ns
from datastores.engine.errors import DatastoreError
from pbsweb.cli import BaseCommand, finish_task, usage_error
from pbsweb.worker import run

KEEPS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


class Command(BaseCommand):
    help = ("Prune a datastore's snapshots, group by group, as PBS: `prune STORE --keep-last N "
            "[--keep-hourly N --keep-daily N --keep-weekly N --keep-monthly N --keep-yearly N] [--ns NS] "
            "[--max-depth N] [--group TYPE/ID] [--dry-run]`. A group a running backup holds is not pruned "
            "(the task fails saying so).")

    def add_arguments(self, parser):
        parser.add_argument("store")
        for k in KEEPS:
            parser.add_argument(f"--keep-{k}", default=None, metavar="N")
        parser.add_argument("--ns", default="")
        parser.add_argument("--max-depth", default=None)
        parser.add_argument("--group", default=None, metavar="TYPE/ID", help="prune only this backup group")
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args, store, ns, dry_run, max_depth, group, **opts):
        cfg, eng = store_or_exit(store)
        keep = {}
        for k in KEEPS:
            v = opts[f"keep_{k}"]
            if v is None:
                continue
            if not v.isdigit():
                raise usage_error(f"keep-{k}: {v!r} is not a non-negative integer")
            keep[f"keep_{k}"] = int(v)
        if max_depth is not None:
            if not max_depth.isdigit() or int(max_depth) > 7:
                raise usage_error(f"max-depth: {max_depth!r} is not a number from 0 to 7")
            max_depth = int(max_depth)
        try:
            validate_ns(ns, "ns")
            if group is not None:
                btype, _, bid = group.partition("/")
                validate_backup_type(btype, "group")
                validate_backup_id(bid, "group")
        except DatastoreError as e:
            raise usage_error(str(e)) from None
        if ns and not eng.ns_path(ns).is_dir():
            raise usage_error(f"ns: namespace '{ns}' does not exist in datastore '{store}'")
        task = run("datastores.tasks.prune", "prune", store, "root@pam",
                   {"store": store, "ns": ns, "keep": keep, "dry_run": dry_run,
                    "max_depth": max_depth, "group": group}, store=store, inline=True, echo=self.stdout)
        finish_task(task)
