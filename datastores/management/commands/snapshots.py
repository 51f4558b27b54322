import json

from datastores.cliutil import store_or_exit
from datastores.engine.datastore import validate_ns
from datastores.engine.errors import DatastoreError
from datastores.services import snapshot_info
from pbsweb.cli import BaseCommand, box_table, usage_error


def _size(n):
    if n is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024


class Command(BaseCommand):
    help = "List the snapshots of a datastore: `snapshots STORE [--ns NS] [--output-format text|json]`."

    def add_arguments(self, parser):
        parser.add_argument("store")
        parser.add_argument("--ns", default="")
        parser.add_argument("--output-format", choices=["text", "json", "json-pretty"], default="text")

    def handle(self, *args, store, ns, output_format, **opts):
        cfg, eng = store_or_exit(store)
        try:
            validate_ns(ns, "ns")
            refs = eng.list_snapshots(ns)
        except DatastoreError as e:
            raise usage_error(str(e)) from None
        items = [snapshot_info(eng, r) for r in refs]
        if output_format != "text":
            out = [{k: v for k, v in i.items() if k != "file_entries"} for i in items]
            self.stdout.write(json.dumps(out, indent=2 if output_format == "json-pretty" else None))
            return
        rows = []
        for i in items:
            name = (f"ns/{i['ns']}/" if i["ns"] else "") + i["snapshot"]
            enc = ("encrypted " + (i["fingerprint"] or "")) if i["encrypted"] else "no"
            vs = (i["verification"] or {}).get("state", "none") if i["finished"] else "unfinished"
            rows.append([name, _size(i["size"]), " ".join(f for f in i["files"]), enc, vs,
                         "yes" if i["protected"] else "", i["comment"]])
        self.stdout.write(box_table(["snapshot", "size", "files", "encrypted", "verify state", "protected",
                                     "notes"], rows))
