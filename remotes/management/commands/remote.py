"""`remote create|list|show|update|remove|test` as proxmox-backup-manager (docs/DESIGN.md §5).

Bad arguments: one line naming the field, exit 2, nothing written.
The secret key is never printed.
"""
import json
from pathlib import Path

from pbsweb.cli import BaseCommand, add_output_format, box_table, finish_task, print_output, usage_error
from pbsweb.errors import Conflict, UserError
from pbsweb.registry import registry
from remotes.engine.config import PROVIDERS
from remotes.forms import LIMIT_FIELDS, PRICE_FIELDS
from remotes.models import Remote
from remotes.serializers import remote_json
from remotes.services import remove_remote, save_remote
from remotes.tasks import run_connection_test

OPTION = {"remote_id": "id", "endpoint": "--endpoint", "bucket": "--bucket", "region": "--region",
          "access_key": "--access-key", "secret_key": "--secret-key", "provider": "--provider",
          "tls_fingerprint": "--fingerprint", "ca_bundle": "--ca-bundle", "min_storage_days": "--min-storage-days",
          "path_style": "--path-style", "comment": "--comment", "object_lock_days": "--object-lock-days",
          "object_lock_mode": "--object-lock-mode"}
BOOL_OPTIONS = ("path_style", "skip_if_none_match", "delete_via_delete_object", "no_checksum_headers")


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _add_settings(parser, create: bool):
    parser.add_argument("--endpoint")
    parser.add_argument("--bucket")
    parser.add_argument("--region")
    parser.add_argument("--access-key")
    parser.add_argument("--secret-key")
    parser.add_argument("--provider", help="|".join(PROVIDERS))
    parser.add_argument("--path-style", metavar="true|false")
    parser.add_argument("--skip-if-none-match", metavar="true|false")
    parser.add_argument("--delete-via-delete-object", metavar="true|false")
    parser.add_argument("--no-checksum-headers", metavar="true|false")
    parser.add_argument("--ca-bundle", metavar="FILE", help="PEM file with the CA certificate ('' to clear)")
    parser.add_argument("--fingerprint", help="SHA-256 fingerprint of the server certificate")
    parser.add_argument("--min-storage-days")
    parser.add_argument("--object-lock-days", metavar="N", help="lock every pushed object N days (0: off)")
    parser.add_argument("--object-lock-mode", metavar="governance|compliance")
    parser.add_argument("--request-rate", metavar="N", help="requests per second, every method ('' = no limit)")
    for cls in "abc":
        parser.add_argument(f"--daily-cap-class-{cls}", metavar="N", help=f"class {cls.upper()} requests a day")
    parser.add_argument("--monthly-budget", metavar="USD", help="dollars a month ('' = no budget)")
    parser.add_argument("--on-cap", metavar="pause|stop", help="what a run does at a cap (default stop)")
    parser.add_argument("--price-storage-tb-month", metavar="USD",
                        help="your storage price per TB-month ('' = the provider's list price)")
    for cls, what in (("a", "uploads and deletes"), ("b", "GETs and HEADs"), ("c", "listings")):
        parser.add_argument(f"--price-class-{cls}", metavar="USD",
                            help=f"your price per 1,000 class {cls.upper()} requests ({what}); "
                                 "give A, B and C together ('' = the provider's)")
    parser.add_argument("--price-egress-gb", metavar="USD", help="your egress price per GB ('' = the provider's)")
    parser.add_argument("--comment")


class Command(BaseCommand):
    help = ("S3 remotes: `remote create ID --type s3 --endpoint URL --bucket B --region R --access-key K "
            "--secret-key S [--path-style true|false] [--provider b2|wasabi|r2|minio|aws|other]`, "
            "`remote list`, `remote show ID`, `remote update ID …`, `remote remove ID`, `remote test ID`.")

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create")
        create.add_argument("id")
        create.add_argument("--type", default="s3")
        _add_settings(create, True)
        ls = sub.add_parser("list")
        add_output_format(ls)
        show = sub.add_parser("show")
        show.add_argument("id")
        add_output_format(show)
        update = sub.add_parser("update")
        update.add_argument("id")
        _add_settings(update, False)
        remove = sub.add_parser("remove")
        remove.add_argument("id")
        test = sub.add_parser("test")
        test.add_argument("id")
        test.add_argument("--write", action="store_true", help="put, get and delete a probe object")
        test.add_argument("--probe", action="store_true", help="probe provider features (quirks)")
        for extension in registry.command_extensions("remote"):  # other apps' subcommands
            extension.add_subcommands(sub)

    def handle(self, *args, action, **opts):
        if hasattr(self, f"do_{action}"):
            return getattr(self, f"do_{action}")(opts)
        for extension in registry.command_extensions("remote"):
            if action in extension.SUBCOMMANDS:
                return extension.SUBCOMMANDS[action](self.stdout, opts)

    # -- helpers ---------------------------------------------------------------
    def _values(self, opts) -> dict:
        values = {}
        for name in ("endpoint", "bucket", "region", "access_key", "secret_key", "provider", "comment"):
            if opts.get(name) is not None:
                values[name] = opts[name] if name == "secret_key" else opts[name].strip()
        if opts.get("fingerprint") is not None:
            values["tls_fingerprint"] = opts["fingerprint"].strip()
        for name in BOOL_OPTIONS:
            if opts.get(name) is not None:
                try:
                    values[name] = _bool(opts[name])
                except ValueError:
                    raise usage_error(f"--{name.replace('_', '-')}: expected true or false, not '{opts[name]}'")
        if opts.get("min_storage_days") is not None:
            try:
                values["min_storage_days"] = int(opts["min_storage_days"])
            except ValueError:
                raise usage_error(f"--min-storage-days: expected a whole number of days, not '{opts['min_storage_days']}'")
        if opts.get("object_lock_days") is not None:
            try:
                values["object_lock_days"] = int(opts["object_lock_days"])
            except ValueError:
                raise usage_error(f"--object-lock-days: expected a whole number of days, not '{opts['object_lock_days']}'")
        if opts.get("object_lock_mode") is not None:
            values["object_lock_mode"] = opts["object_lock_mode"].strip().lower()
        values.update({name: opts[name] for name in LIMIT_FIELDS + PRICE_FIELDS
                       if opts.get(name) is not None})  # checked by save_remote
        if opts.get("ca_bundle") is not None:
            if opts["ca_bundle"] == "":
                values["ca_bundle"] = ""
            else:
                try:
                    values["ca_bundle"] = Path(opts["ca_bundle"]).read_text()
                except OSError as exc:
                    raise usage_error(f"--ca-bundle: cannot read '{opts['ca_bundle']}': {exc.strerror}")
                except (ValueError, UnicodeDecodeError):  # a NUL byte in the name, or not a text file
                    raise usage_error(f"--ca-bundle: {opts['ca_bundle']!r} is not a readable PEM file") from None
        return values

    def _save(self, values, remote=None) -> Remote:
        try:
            return save_remote(values, remote)
        except UserError as e:
            raise usage_error(f"{OPTION.get(e.field, '--' + e.field.replace('_', '-'))}: {e.message}") from None

    def _get(self, remote_id) -> Remote:
        obj = Remote.objects.filter(remote_id=remote_id).first()
        if obj is None:
            raise usage_error(f"id: remote '{remote_id}' does not exist")
        return obj

    # -- actions ---------------------------------------------------------------
    def do_create(self, opts):
        if opts["type"] != "s3":
            raise usage_error(f"--type: only 's3' remotes exist, not '{opts['type']}'")
        remote = self._save({"remote_id": opts["id"], **self._values(opts)})
        self.stdout.write(f"created remote '{remote.remote_id}'")

    def do_update(self, opts):
        remote = self._get(opts["id"])
        values = self._values(opts)
        if not values:
            raise usage_error("update: nothing to change (give --endpoint, --bucket, --secret-key, …)")
        self._save(values, remote)
        self.stdout.write(f"updated remote '{remote.remote_id}'")

    def do_list(self, opts):
        items = [{"name": r.remote_id, "type": r.type, "provider": r.provider, "endpoint": r.endpoint,
                  "bucket": r.bucket, "region": r.region, "comment": r.comment} for r in Remote.objects.all()]
        print_output(self.stdout, opts["output_format"], ["name", "type", "endpoint", "bucket"],
                     ["name", "type", "endpoint", "bucket"], items)

    def do_show(self, opts):
        data = remote_json(self._get(opts["id"]))
        if opts["output_format"] != "text":
            self.stdout.write(json.dumps(data, indent=2 if opts["output_format"] == "json-pretty" else None))
            return
        last = data.pop("last-test")
        rows = [[k, "" if v is None else ("true" if v is True else "false" if v is False else v)]
                for k, v in data.items()]
        if last:
            rows.append(["last-test", f"{'OK' if last['ok'] else 'ERROR'}: {last['message']}"])
        self.stdout.write(box_table(["Name", "Value"], rows))

    def do_remove(self, opts):
        remote = self._get(opts["id"])
        try:
            remove_remote(remote)
        except Conflict as e:
            raise usage_error(e.message) from None
        self.stdout.write(f"removed remote '{opts['id']}'")

    def do_test(self, opts):
        remote = self._get(opts["id"])
        task, _result = run_connection_test("root@pam", remote=remote, record=True, write_probe=opts["write"],
                                            probe_features=opts["probe"], echo=self.stdout)
        finish_task(task)
