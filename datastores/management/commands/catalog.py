from datastores.cliutil import store_or_exit
from datastores.engine.datastore import validate_ns
from datastores.engine.errors import DatastoreError
from pbsweb.cli import BaseCommand, finish_task, usage_error
from pbsweb.worker import run


class Command(BaseCommand):
    help = "Snapshot catalogs: `catalog rebuild STORE [SNAPSHOT] [--ns NS]`."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        rb = sub.add_parser("rebuild")
        rb.add_argument("store")
        rb.add_argument("snapshot", nargs="?", default=None)
        rb.add_argument("--ns", default="")

    def handle(self, *args, action, store, snapshot, ns, **opts):
        cfg, eng = store_or_exit(store)
        try:
            validate_ns(ns, "ns")
            if snapshot:
                snapshot = eng.find_snapshot(snapshot, ns).name
        except DatastoreError as e:
            raise usage_error(str(e)) from None
        task = run("datastores.tasks.catalog_rebuild", "catalog",
                   f"{store}:{snapshot}" if snapshot else store, "root@pam",
                   {"store": store, "snapshot": snapshot, "ns": ns}, store=store, inline=True,
                   echo=self.stdout)
        finish_task(task)
