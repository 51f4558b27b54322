import json
import os

from datastores.cliutil import read_passphrase
from datastores.engine.crypto import MIN_PASSPHRASE, create_keyfile, keyfile_info, paper_key
from datastores.engine.errors import DatastoreError
from pbsweb.cli import BaseCommand, box_table, usage_error


class Command(BaseCommand):
    help = ("Encryption key files: `key create FILE [--kdf scrypt|none]` (passphrase from "
            "PBSWEB_KEY_PASSPHRASE or a prompt), `key show FILE`, `key paperkey FILE`.")

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        cr = sub.add_parser("create")
        cr.add_argument("file")
        cr.add_argument("--kdf", default="scrypt")
        sh = sub.add_parser("show")
        sh.add_argument("file")
        sh.add_argument("--output-format", choices=["text", "json", "json-pretty"], default="text")
        pk = sub.add_parser("paperkey")
        pk.add_argument("file")

    def handle(self, *args, action, file, **opts):
        if action == "create":
            kdf = opts["kdf"]
            if kdf not in ("scrypt", "none"):
                raise usage_error(f"kdf: {kdf!r} is not scrypt or none")
            if os.path.exists(file):
                raise usage_error(f"file: {file} already exists; refusing to overwrite it")
            parent = os.path.dirname(os.path.abspath(file))
            if not os.path.isdir(parent):
                raise usage_error(f"file: directory {parent} does not exist")
            passphrase = None
            if kdf == "scrypt":
                passphrase = read_passphrase(confirm=True)
                if len(passphrase) < MIN_PASSPHRASE:
                    raise usage_error(f"passphrase: at least {MIN_PASSPHRASE} characters are required")
            try:
                fp = create_keyfile(file, kdf, passphrase)
            except DatastoreError as e:
                raise usage_error(str(e)) from None
            self.stdout.write(f"created key file {file}\nfingerprint: {fp}\n"
                              "Keep a copy of this key file (and its passphrase) in a safe place: "
                              "without it, encrypted backups cannot be restored.")
            return
        try:
            info = keyfile_info(file)
        except DatastoreError as e:
            raise usage_error(f"file: {e}") from None
        except OSError as e:  # a directory, a name too long, unreadable
            raise usage_error(f"file: cannot read {file!r}: {e.strerror}") from None
        if action == "paperkey":
            self.stdout.write(paper_key(file))
            return
        if opts["output_format"] != "text":
            self.stdout.write(json.dumps(info, indent=2 if opts["output_format"] == "json-pretty" else None))
            return
        self.stdout.write(box_table(["key", "value"], [[k, "" if v is None else v] for k, v in info.items()]))
