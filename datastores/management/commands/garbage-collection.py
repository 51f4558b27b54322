import json

from datastores.cliutil import store_or_exit
from datastores.status import gc_status
from pbsweb.cli import BaseCommand, box_table, finish_task


class Command(BaseCommand):
    help = "Garbage collection: `garbage-collection start STORE`, `garbage-collection status STORE`."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        st = sub.add_parser("start")
        st.add_argument("store")
        ss = sub.add_parser("status")
        ss.add_argument("store")
        ss.add_argument("--output-format", choices=["text", "json", "json-pretty"], default="text")

    def handle(self, *args, action, store, **opts):
        cfg, eng = store_or_exit(store)
        if action == "start":
            task = cfg.launch("root@pam", inline=True, echo=self.stdout)
            finish_task(task)
            return
        status = gc_status(cfg)
        if opts["output_format"] != "text":
            self.stdout.write(json.dumps(status, indent=2 if opts["output_format"] == "json-pretty" else None,
                                         default=str))
            return
        rows = [[k, "" if v is None else v] for k, v in status.items()]
        self.stdout.write(box_table(["key", "value"], rows))
