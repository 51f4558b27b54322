"""`drill run REMOTE [--remote-store PREFIX] [--sample N] [--seed N]`, `drill list`,
`drill create ID --remote R [--remote-store P] [--sample N] [--schedule S]`, `drill remove ID`."""
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from pbsweb.cli import (
    BaseCommand,
    acting_user,
    add_auth_id,
    add_output_format,
    add_remote_store,
    check_remote_store,
    finish_task,
    permission_error,
    print_output,
    usage_error,
)
from pbsweb.errors import UserError
from pbsweb.worker import run
from remotes.models import Remote
from syncjobs.drills import drill_status
from syncjobs.forms import PREFIX_RE, DrillJobForm
from syncjobs.models import DEFAULT_DRILL_SAMPLE, DrillJob, drill_worker_id
from syncjobs.services import remove_drill, save_drill


class Command(BaseCommand):
    help = ("Restore drills: download and verify what a remote's bucket holds and restore one archive "
            "to a scratch directory. `drill run REMOTE [--remote-store PREFIX] [--sample N] [--seed N]`, "
            "`drill list`, `drill create ID --remote R [--remote-store P] [--sample N] [--schedule S]`, "
            "`drill remove ID`.")

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        run = sub.add_parser("run")
        run.add_argument("remote")
        add_remote_store(run, "prefix in the bucket (default: every datastore in the bucket)", default="")
        run.add_argument("--sample", default=None, help="older snapshots per group to check (default 2)")
        run.add_argument("--seed", default=None, help="seed of the random sample (default: the time)")
        ls = sub.add_parser("list")
        add_output_format(ls)
        create = sub.add_parser("create")
        create.add_argument("id")
        create.add_argument("--remote", required=True)
        add_remote_store(create, "prefix in the bucket (default: every datastore in the bucket)", default="")
        create.add_argument("--sample", default=None)
        create.add_argument("--budget", default="", help="bytes per run, e.g. 10GiB: each run verifies the next "
                                                         "slice of --remote-store, all of it every K runs")
        create.add_argument("--max-gets", dest="max_gets", default="", help="or chunk downloads per run")
        create.add_argument("--schedule", default="weekly")
        create.add_argument("--comment", default="")
        add_auth_id(create)
        remove = sub.add_parser("remove")
        remove.add_argument("id")
        add_auth_id(remove)

    def handle(self, *args, action, **opts):
        check_remote_store(opts)
        getattr(self, f"do_{action}")(opts)

    @staticmethod
    def _int(opts, name, low=0, high=1000):
        value = opts.get(name)
        if value is None:
            return None
        try:
            n = int(value)
        except ValueError:
            raise usage_error(f"--{name}: expected a whole number, not '{value}'") from None
        if not low <= n <= high:
            raise usage_error(f"--{name}: must be between {low} and {high}")
        return n

    def do_run(self, opts):
        remote = Remote.objects.filter(remote_id=opts["remote"]).first()
        if remote is None:
            raise usage_error(f"remote: remote '{opts['remote']}' does not exist")
        store = (opts["remote_store"] or "").strip("/")
        if store and not PREFIX_RE.match(store):
            raise usage_error(f"--remote-store: invalid prefix '{opts['remote_store']}'")
        sample = self._int(opts, "sample")
        seed = self._int(opts, "seed", 0, 2 ** 63)
        jobs = list(DrillJob.objects.filter(remote=remote, remote_store=store))
        if len(jobs) == 1:  # the drill of a job: shown as the job's last run
            task = jobs[0].launch("root@pam", sample=sample, seed=seed, inline=True, echo=self.stdout)
        else:
            args = {"remote": remote.remote_id, "remote_store": store,
                    "sample": DEFAULT_DRILL_SAMPLE if sample is None else sample}
            if seed is not None:
                args["seed"] = seed
            task = run("syncjobs.tasks.run_drill", "drill", drill_worker_id(remote.remote_id, store),
                       "root@pam", args, inline=True, echo=self.stdout)
        finish_task(task)

    def do_list(self, opts):
        items = []
        for job in DrillJob.objects.select_related("remote"):
            items.append({"id": job.job_id, "remote": job.remote.remote_id, "remote-store": job.remote_store or "all",
                          "sample": job.sample_size, "schedule": job.schedule, "enabled": job.enabled,
                          "last-drill": timezone.localtime(job.last_time).strftime("%Y-%m-%d %H:%M:%S")
                          if job.last_time else None,
                          "snapshots": job.last_snapshots if job.last_time else None,
                          "status": ("OK" if job.last_ok else f"FAILED: {job.last_message}")
                          if job.last_ok is not None else "never run",
                          "coverage": job.coverage_text() or None})
        # remotes drilled only ad hoc (or never) get a row too: never-verified copies must show
        for remote in Remote.objects.all():
            if any(i["remote"] == remote.remote_id for i in items):
                continue
            st = drill_status(remote)
            items.append({"id": "-", "remote": remote.remote_id,
                          "remote-store": st["remote_store"] or "all" if st else "-",
                          "sample": None, "schedule": "-", "enabled": None,
                          "last-drill": timezone.localtime(st["time"]).strftime("%Y-%m-%d %H:%M:%S") if st else None,
                          "snapshots": st["snapshots"] if st else None,
                          "status": ("OK" if st["ok"] else f"FAILED: {st['message']}") if st
                          else "never verified: no restore drill has run"})
        print_output(self.stdout, opts["output_format"],
                     ["drill", "remote", "remote-store", "schedule", "last drill", "snapshots", "status"],
                     ["id", "remote", "remote-store", "schedule", "last-drill", "snapshots", "status"], items)

    def do_create(self, opts):
        data = {"id": opts["id"], "remote": opts["remote"], "remote_store": opts["remote_store"],
                "sample_size": opts["sample"] if opts["sample"] is not None else "", "schedule": opts["schedule"],
                "enabled": "true", "comment": opts["comment"], "budget": opts["budget"],
                "max_gets": opts["max_gets"]}
        try:
            job = save_drill(acting_user(opts), DrillJobForm(data))
        except UserError as e:
            flag = "id" if e.field in ("id", "__all__") else f"--{e.field}"
            raise usage_error(f"{flag}: {e.message}") from None
        except PermissionDenied as e:
            raise permission_error(e) from None
        self.stdout.write(f"created restore drill '{job.job_id}'")

    def do_remove(self, opts):
        drill = DrillJob.objects.select_related("remote").filter(job_id=opts["id"]).first()
        if drill is None:
            raise usage_error(f"id: restore drill '{opts['id']}' does not exist")
        try:
            remove_drill(acting_user(opts), drill)
        except PermissionDenied as e:
            raise permission_error(e) from None
        self.stdout.write(f"removed restore drill '{opts['id']}'")
