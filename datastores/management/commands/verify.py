from datastores.cliutil import store_or_exit
from datastores.engine.datastore import validate_ns
from datastores.engine.errors import DatastoreError
from pbsweb.cli import BaseCommand, finish_task, usage_error
from pbsweb.worker import run


class Command(BaseCommand):
    help = ("Verify a datastore (or one snapshot): `verify STORE [SNAPSHOT] [--ns NS] "
            "[--ignore-verified true|false] [--outdated-after DAYS]`.")

    def add_arguments(self, parser):
        parser.add_argument("store")
        parser.add_argument("snapshot", nargs="?", default=None)
        parser.add_argument("--ns", default="")
        parser.add_argument("--ignore-verified", default="false")
        parser.add_argument("--outdated-after", default=None)

    def handle(self, *args, store, snapshot, ns, ignore_verified, outdated_after, **opts):
        cfg, eng = store_or_exit(store)
        if ignore_verified not in ("true", "false", "1", "0", "yes", "no"):
            raise usage_error(f"ignore-verified: {ignore_verified!r} is not true or false")
        if outdated_after is not None:
            if not outdated_after.isdigit():
                raise usage_error(f"outdated-after: {outdated_after!r} is not a number of days")
            outdated_after = int(outdated_after)
        try:
            validate_ns(ns, "ns")
            if snapshot:
                snapshot = eng.find_snapshot(snapshot, ns).name
        except DatastoreError as e:
            raise usage_error(str(e)) from None
        task = run("datastores.tasks.verify", "verify", f"{store}:{snapshot}" if snapshot else store,
                   "root@pam", {"store": store, "snapshot": snapshot, "ns": ns,
                                "ignore_verified": ignore_verified in ("true", "1", "yes"),
                                "outdated_after": outdated_after}, store=store, inline=True, echo=self.stdout)
        finish_task(task)
