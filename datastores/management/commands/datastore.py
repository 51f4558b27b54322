from django.core.exceptions import ValidationError

from datastores.models import Datastore, validate_schedule
from datastores.services import FieldError, create_datastore, remove_datastore
from pbsweb.cli import BaseCommand, add_output_format, print_output, usage_error


class Command(BaseCommand):
    help = "Datastores: `datastore create NAME PATH [--comment C]`, `datastore list`, `datastore remove NAME`."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        cr = sub.add_parser("create")
        cr.add_argument("name")
        cr.add_argument("path")
        cr.add_argument("--comment", default="")
        cr.add_argument("--gc-schedule", default="daily")
        cr.add_argument("--verify-new", choices=["true", "false"], default="false")
        ls = sub.add_parser("list")
        add_output_format(ls)
        rm = sub.add_parser("remove")
        rm.add_argument("name")

    def handle(self, *args, action, **opts):
        if action == "create":
            try:
                validate_schedule(opts["gc_schedule"])
            except ValidationError as e:
                raise usage_error(f"gc-schedule: {e.messages[0]}") from None
            try:
                store = create_datastore(opts["name"], opts["path"], opts["comment"], opts["gc_schedule"],
                                         opts["verify_new"] == "true")
            except FieldError as e:
                raise usage_error(str(e)) from None
            self.stdout.write(f"created datastore '{store.name}' at {store.path}")
        elif action == "list":
            items = [{"name": s.name, "path": s.path, "comment": s.comment, "gc-schedule": s.schedule}
                     for s in Datastore.objects.all()]
            print_output(self.stdout, opts["output_format"], ["name", "path", "comment"],
                         ["name", "path", "comment"], items)
        elif action == "remove":
            store = Datastore.objects.filter(name=opts["name"]).first()
            if store is None:
                raise usage_error(f"name: no datastore '{opts['name']}'")
            try:
                remove_datastore(store)
            except FieldError as e:
                raise usage_error(str(e)) from None
            self.stdout.write(f"removed datastore '{store.name}' from the configuration; "
                              f"its data stays on disk at {store.path}")
