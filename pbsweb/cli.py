"""Helpers for the management commands: PBS-style tables, errors, running tasks."""
import argparse
import json
import re
import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand as DjangoBaseCommand
from django.core.management.base import CommandError

from pbsweb.access import CLI_ROOT


class BaseCommand(DjangoBaseCommand):
    """The project's commands. Django's system checks are left to `manage.py check` (and `make test`):
    the URL check alone imports every view, API and form module, which a command that lists a
    table does not need (docs/DESIGN.md §1, "A fast command line")."""

    requires_system_checks = []


BOX = {"tl": "┌", "tm": "┬", "tr": "┐", "hl": "─", "vl": "│", "ml": "╞", "mm": "╪", "mr": "╡",
       "hh": "═", "bl": "└", "bm": "┴", "br": "┘"}


def box_table(headers: list[str], rows: list[list]) -> str:
    """A table drawn like proxmox-backup-manager's text output."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(left, mid, right, fill):
        return left + mid.join(fill * (w + 2) for w in widths) + right

    def row(values):
        return BOX["vl"] + BOX["vl"].join(f" {v.ljust(w)} " for v, w in zip(values, widths)) + BOX["vl"]

    out = [line(BOX["tl"], BOX["tm"], BOX["tr"], BOX["hl"]), row(headers),
           line(BOX["ml"], BOX["mm"], BOX["mr"], BOX["hh"])]
    for i, r in enumerate(cells):
        out.append(row(r))
        if i < len(cells) - 1:
            out.append(line("├", "┼", "┤", BOX["hl"]))
    out.append(line(BOX["bl"], BOX["bm"], BOX["br"], BOX["hl"]))
    return "\n".join(out)


def print_output(stdout, fmt: str, headers: list[str], keys: list[str], items: list[dict]) -> None:
    if fmt == "json":
        stdout.write(json.dumps(items, indent=None, default=str))
    elif fmt == "json-pretty":
        stdout.write(json.dumps(items, indent=2, default=str))
    else:
        stdout.write(box_table(headers, [[item.get(k) for k in keys] for item in items]))


def one_line(message: str) -> str:
    """Control characters a user typed (newlines, NUL) shown escaped, so an error stays one line."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], str(message).strip())


def usage_error(message: str) -> CommandError:
    """A one-line error naming the field; management commands exit 2 with it."""
    return CommandError(one_line(message), returncode=2)


def add_auth_id(parser) -> None:
    parser.add_argument("--auth-id", dest="auth_id", default=None, metavar="USER@REALM",
                        help="act with this user's privileges (default: root@pam, all of them)")


def acting_user(opts):
    """The user named by --auth-id, else root@pam (CLI_ROOT): whose privileges a change is checked against."""
    name = opts.get("auth_id")
    if name is None:
        return CLI_ROOT
    user = get_user_model().objects.filter(username=name, is_active=True).first()
    if user is None:
        raise usage_error(f"auth-id: no active user '{name}'")
    return user


def permission_error(exc) -> CommandError:
    """A change the acting user may not make: the missing privilege, exit 1."""
    return CommandError(one_line(str(exc)), returncode=1)


def finish_task(task) -> None:
    """Exit non-zero when the task the command ran failed (its log was streamed already)."""
    if task.state == "error":
        sys.stdout.flush()
        raise CommandError(f"task failed: {task.status}", returncode=1)


def add_output_format(parser) -> None:
    parser.add_argument("--output-format", choices=["text", "json", "json-pretty"], default="text")


def add_remote_store(parser, help_text: str, **kwargs) -> None:
    """`--remote-store PREFIX`, the prefix in the bucket, as every command calls it. `--store` names a
    local datastore everywhere (sync-job, backup, ...); here it is refused by `check_remote_store`."""
    parser.add_argument("--remote-store", dest="remote_store", help=help_text, **kwargs)
    parser.add_argument("--store", dest="local_store_flag", default=None, help=argparse.SUPPRESS)


def check_remote_store(opts) -> None:
    if opts.get("local_store_flag") is not None:
        raise usage_error("--store: names a local datastore; give the prefix in the bucket as --remote-store")
