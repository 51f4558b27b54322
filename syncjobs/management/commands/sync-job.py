"""`sync-job create|list|show|run|update|remove` as proxmox-backup-manager's."""
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand

from pbsweb.cli import (acting_user, add_auth_id, add_output_format, box_table, finish_task, permission_error,
                        print_output, usage_error)
from pbsweb.errors import UserError
from syncjobs.engine.recover import parse_as_of
from syncjobs.forms import SyncJobForm, form_data_from_api, job_edit_data
from syncjobs.models import KEEP_FIELDS, SyncJob
from syncjobs.serializers import job_to_json
from syncjobs.services import remove_sync_job, save_sync_job
from syncjobs.plan import job_plan, keep_options, plan_rows, prune_simulation

CLI_USER = "root@pam"
OPTIONS = [  # (flag, dest, help)
    ("--store", "store", "local datastore"),
    ("--remote", "remote", "S3 remote"),
    ("--remote-store", "remote_store", "prefix in the bucket (default: the datastore name)"),
    ("--schedule", "schedule", "calendar event or cron expression, e.g. daily or '0 2 * * *'"),
    ("--remove-vanished", "remove_vanished", "true|false"),
    ("--direction", "direction", "push|pull"),
    ("--ns", "ns", "local namespace"),
    ("--max-depth", "max_depth", "namespace levels below --ns"),
    ("--transfer-last", "transfer_last", "only the N newest snapshots per group"),
    ("--rate-out", "rate_out", "rate limit, e.g. 10MiB (per second)"),
    ("--burst-out", "burst_out", "burst size, e.g. 20MiB"),
    ("--workers", "workers", "parallel uploads (default 8)"),
    ("--force", "force", "true|false: take over a prefix owned by another datastore"),
    ("--enabled", "enabled", "true|false"),
    ("--comment", "comment", "comment"),
] + [(f"--{name.replace('_', '-')}", name, "own remote retention (push, instead of --remove-vanished): "
      f"{name.replace('_', '-')} N for the bucket") for name in KEEP_FIELDS]
BOOL_FIELDS = ("remove_vanished", "force", "enabled")


def _bool_arg(name: str, value: str) -> str:
    v = value.strip().lower()
    if v in ("true", "1", "yes", "on"):
        return "true"
    if v in ("false", "0", "no", "off"):
        return ""
    raise usage_error(f"{name.replace('_', '-')}: expected true or false, not {value!r}")


def _job(job_id: str) -> SyncJob:
    job = SyncJob.objects.select_related("store", "remote", "last_task").filter(job_id=job_id).first()
    if job is None:
        raise usage_error(f"id: no sync job '{job_id}'")
    return job


def _last_run(job: SyncJob) -> str:
    t = job.last_task
    if t is None:
        return ""
    if t.running:
        return "running"
    return f"{t.status} {t.starttime.strftime('%Y-%m-%d %H:%M:%S')}"


class Command(BaseCommand):
    help = ("Sync jobs: `sync-job create ID --store S --remote R --remote-store P [...]`, "
            "`sync-job list`, `sync-job show ID`, `sync-job run ID [--reconcile] [--as-of TIME]`, "
            "`sync-job update ID ...`, `sync-job remove ID`, "
            "`sync-job plan ID`: what the next run uploads, its requests, cost and duration; "
            "`sync-job prune-simulate ID [--keep-daily N ...]`: what the job's own remote retention keeps.")

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        for name in ("create", "update"):
            p = sub.add_parser(name)
            p.add_argument("id")
            for flag, dest, help_text in OPTIONS:
                p.add_argument(flag, dest=dest, default=None, help=help_text)
            p.add_argument("--group-filter", dest="group_filter", action="append", default=None,
                           help="[include:|exclude:]type:<t>|group:<t>/<id>|regex:<re> (repeatable)")
            add_auth_id(p)
            if name == "update":
                p.add_argument("--delete", action="append", default=[],
                               help="reset an option to its default, e.g. --delete rate-out")
        ls = sub.add_parser("list")
        add_output_format(ls)
        sh = sub.add_parser("show")
        sh.add_argument("id")
        add_output_format(sh)
        rn = sub.add_parser("run")
        rn.add_argument("id")
        rn.add_argument("--reconcile", action="store_true",
                        help="list the whole remote prefix to resync the local inventory")
        rn.add_argument("--as-of", dest="as_of", default=None, metavar="TIME",
                        help="pull: read the bucket as it was then (object versions kept by Object Lock), "
                             "e.g. 2026-11-30T18:00:00Z")
        rm = sub.add_parser("remove")
        rm.add_argument("id")
        add_auth_id(rm)
        pl = sub.add_parser("plan")
        pl.add_argument("id")
        add_output_format(pl)
        ps = sub.add_parser("prune-simulate", help="which bucket snapshots the job's own retention keeps "
                            "and removes (from the prefix's inventory; nothing is removed)")
        ps.add_argument("id")
        for name in KEEP_FIELDS:
            ps.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, metavar="N",
                            help="instead of the job's own keep options")
        add_output_format(ps)

    def handle(self, *args, action, **opts):
        getattr(self, f"do_{action.replace('-', '_')}")(opts)

    # -- actions -----------------------------------------------------------------
    def _values(self, opts) -> dict:
        values = {}
        for _, dest, _ in OPTIONS:
            if opts.get(dest) is not None:
                values[dest] = _bool_arg(dest, opts[dest]) if dest in BOOL_FIELDS else opts[dest]
        if opts.get("group_filter") is not None:
            values["group_filter"] = "\n".join(opts["group_filter"])
        return values

    def _save(self, opts, form: SyncJobForm) -> SyncJob:
        try:
            return save_sync_job(acting_user(opts), form)
        except UserError as e:
            raise usage_error(str(e)) from None
        except PermissionDenied as e:
            raise permission_error(e) from None

    def do_create(self, opts):
        for required in ("store", "remote"):
            if opts.get(required) is None:
                raise usage_error(f"{required}: required (--{required})")
        data = {"enabled": "true", "direction": "push"}
        data.update(self._values(opts))
        data["id"] = opts["id"]
        job = self._save(opts, SyncJobForm(data))
        self.stdout.write(f"created sync job '{job.job_id}': {job.direction} datastore '{job.store.name}' "
                          f"{'to' if job.direction == 'push' else 'from'} "
                          f"{job.remote.remote_id}:{job.remote_store}")

    def do_update(self, opts):
        job = _job(opts["id"])
        data = job_edit_data(job)
        defaults = {"remote-store": "", "schedule": "", "ns": "", "max-depth": "", "group-filter": "",
                    "transfer-last": "", "rate-out": "", "burst-out": "", "workers": "",
                    "comment": "", "remove-vanished": "", "force": "",
                    **{name.replace("_", "-"): "" for name in KEEP_FIELDS}}
        for name in opts.get("delete") or []:
            if name not in defaults:
                raise usage_error(f"delete: cannot reset '{name}' (one of {', '.join(sorted(defaults))})")
            data.update(form_data_from_api({name: defaults[name]}))
        data.update(self._values(opts))
        self._save(opts, SyncJobForm(data, instance=job))
        self.stdout.write(f"updated sync job '{job.job_id}'")

    def do_list(self, opts):
        jobs = SyncJob.objects.select_related("store", "remote", "last_task")
        fmt = opts["output_format"]
        if fmt != "text":
            print_output(self.stdout, fmt, [], [], [job_to_json(j) for j in jobs])
            return
        headers = ["id", "direction", "store", "remote", "remote-store", "ns", "schedule",
                   "remove-vanished", "last run", "next run", "comment"]
        rows = [[j.job_id, j.direction, j.store.name, j.remote.remote_id, j.remote_store, j.ns, j.schedule,
                 "yes" if j.remove_vanished else "no", _last_run(j),
                 j.next_run.strftime("%Y-%m-%d %H:%M") if j.next_run else "", j.comment] for j in jobs]
        self.stdout.write(box_table(headers, rows))

    def do_show(self, opts):
        job = _job(opts["id"])
        data = job_to_json(job)
        fmt = opts["output_format"]
        if fmt != "text":
            print_output(self.stdout, fmt, [], [], data)
            return
        rows = [[k, ", ".join(v) if isinstance(v, list) else ("" if v is None else str(v).lower() if isinstance(v, bool) else v)] for k, v in data.items()
                if k not in ("next-run", "last-run-endtime")]
        if job.next_run:
            rows.append(["next-run", job.next_run.strftime("%Y-%m-%d %H:%M:%S")])
        if job.last_summary:
            rows.append(["last-run-summary", job.last_summary])
        self.stdout.write(box_table(["Name", "Value"], rows))

    def do_run(self, opts):
        job = _job(opts["id"])
        as_of = None
        if opts.get("as_of") is not None:
            if job.direction != "pull":
                raise usage_error(f"--as-of: only a pull job reads the bucket as of a time ('{job.job_id}' pushes)")
            try:
                as_of = parse_as_of(opts["as_of"]).isoformat()
            except ValueError as e:
                raise usage_error(f"--as-of: {e}") from None
        task = job.launch(CLI_USER, reconcile=bool(opts["reconcile"]), as_of=as_of, inline=True, echo=self.stdout)
        finish_task(task)

    def do_plan(self, opts):
        job = _job(opts["id"])
        try:
            data = job_plan(job)
        except UserError as e:
            raise usage_error(str(e)) from None
        if opts["output_format"] != "text":
            print_output(self.stdout, opts["output_format"], [], [], data)
            return
        self.stdout.write(box_table(["Plan", "Value"], [list(r) for r in plan_rows(data)]))

    def do_prune_simulate(self, opts):
        job = _job(opts["id"])
        values = {}
        for name in KEEP_FIELDS:
            if opts.get(name) is not None:
                try:
                    values[name] = int(opts[name])
                    if values[name] < 0:
                        raise ValueError
                except ValueError:
                    raise usage_error(f"--{name.replace('_', '-')}: expected a whole number >= 0, "
                                      f"not '{opts[name]}'") from None
        try:
            data = prune_simulation(job, keep_options(values, job) if values else None)
        except UserError as e:
            raise usage_error(str(e)) from None
        data.pop("rows")
        if opts["output_format"] != "text":
            print_output(self.stdout, opts["output_format"], [], [], data)
            return
        rows = [[(f"{s['ns']}:" if s["ns"] else "") + f"{s['backup-type']}/{s['backup-id']}", s["snapshot"],
                 s["mark"] if s["mark"] in ("keep", "remove") else f"keep ({s['mark']})"] for s in data["snapshots"]]
        keep = " ".join(f"--{k} {v}" for k, v in data["keep"].items()) or "none"
        self.stdout.write(f"remote retention of sync job '{job.job_id}' (s3 prefix {data['remote-store']}): "
                          f"keep options {keep}: {data['kept']} kept, {data['removed']} removed")
        self.stdout.write(box_table(["group", "snapshot", "result"], rows))
        for note in data["notes"]:
            self.stdout.write(f"note: {note}")

    def do_remove(self, opts):
        job = _job(opts["id"])
        try:
            remove_sync_job(acting_user(opts), job)
        except PermissionDenied as e:
            raise permission_error(e) from None
        self.stdout.write(f"removed sync job '{job.job_id}'")

