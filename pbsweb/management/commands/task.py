from pbsweb import tasklog
from pbsweb.cli import BaseCommand, add_output_format, print_output, usage_error
from pbsweb.models import Task
from pbsweb.worker import request_stop


class Command(BaseCommand):
    help = "Task history: `task list [--limit N] [--all]`, `task log UPID`, `task stop UPID`."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        ls = sub.add_parser("list")
        ls.add_argument("--limit", type=int, default=50)
        ls.add_argument("--all", action="store_true", help="include finished tasks (default: running and last 50)")
        ls.add_argument("--typefilter", default="")
        add_output_format(ls)
        lg = sub.add_parser("log")
        lg.add_argument("upid")
        st = sub.add_parser("stop")
        st.add_argument("upid")

    def handle(self, *args, action, **opts):
        if action == "list":
            qs = Task.objects.all()
            if opts["typefilter"]:
                qs = qs.filter(worker_type=opts["typefilter"])
            items = [{
                "upid": t.upid, "starttime": t.starttime.strftime("%Y-%m-%d %H:%M:%S"),
                "endtime": t.endtime.strftime("%Y-%m-%d %H:%M:%S") if t.endtime else "",
                "status": "running" if t.running else t.status, "user": t.user,
                "description": t.description,
            } for t in qs[: max(1, opts["limit"])]]
            print_output(self.stdout, opts["output_format"],
                         ["starttime", "endtime", "user", "description", "status", "upid"],
                         ["starttime", "endtime", "user", "description", "status", "upid"], items)
            return
        task = Task.objects.filter(upid=opts["upid"]).first()
        if task is None:
            raise usage_error(f"upid: no task '{opts['upid']}'")
        if action == "stop":
            request_stop(task)
            self.stdout.write(f"stop requested for {task.upid}")
            return
        offset = 0
        while True:  # in 1 MiB steps: a read of 1 TiB at once asks the allocator for 1 TiB
            data, offset = tasklog.read_from(task.log_path, offset)
            if not data:
                break
            self.stdout.write(data.decode("utf-8", "replace"), ending="")
