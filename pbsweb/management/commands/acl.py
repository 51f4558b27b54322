"""Access control as `proxmox-backup-manager acl`:

    acl update PATH ROLE --auth-id USER@REALM[!TOKEN] [--propagate true|false] [--delete]
    acl list [--output-format json]

A token holds what its own entries grant and its user holds too (PBS privilege separation),
so a host's token is enrolled with a role for the user and the same role for the token.
"""
import re

from pbsweb.access import ROLES
from pbsweb.cli import BaseCommand, add_output_format, print_output, usage_error
from pbsweb.management.commands.user import existing_user
from pbsweb.models import AclEntry, ApiToken

def existing_token(auth_id: str) -> ApiToken:
    username, _, name = auth_id.partition("!")
    token = ApiToken.objects.filter(user__username=username, name=name).first()
    if token is None:
        raise usage_error(f"auth-id: token '{auth_id}' does not exist (user generate-token {username} {name})")
    return token


PATH_RE = re.compile(r"^/([A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)?$")


class Command(BaseCommand):
    help = "Access control list: update (grant or, with --delete, revoke a role), list."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        u = sub.add_parser("update")
        u.add_argument("path")
        u.add_argument("role")
        u.add_argument("--auth-id", required=True)
        u.add_argument("--propagate", choices=["true", "false"], default="true")
        u.add_argument("--delete", action="store_true", help="remove this entry instead")
        add_output_format(sub.add_parser("list"))

    def handle(self, *args, action, **opts):
        if action == "list":
            items = [{"path": e.path, "ugid": e.auth_id, "roleid": e.role, "propagate": e.propagate}
                     for e in AclEntry.objects.select_related("user", "token__user").order_by("path", "role")]
            keys = ["path", "ugid", "roleid", "propagate"]
            print_output(self.stdout, opts["output_format"], keys, keys, items)
            return
        path, role, auth_id = opts["path"], opts["role"], opts["auth_id"]
        if not PATH_RE.match(path):
            raise usage_error(f"path: {path!r} is not an ACL path such as / or /datastore/store1")
        if role not in ROLES:
            raise usage_error(f"role: {role!r} is not one of {', '.join(ROLES)}")
        holder = {"token": existing_token(auth_id)} if "!" in auth_id else {"user": existing_user(auth_id, "auth-id")}
        if opts["delete"]:
            deleted, _ = AclEntry.objects.filter(path=path, role=role, **holder).delete()
            if not deleted:
                raise usage_error(f"auth-id: {auth_id} has no role {role} on {path}")
            self.stdout.write(f"removed {role} on {path} for {auth_id}")
            return
        AclEntry.objects.update_or_create(path=path, role=role, **holder,
                                          defaults={"propagate": opts["propagate"] == "true"})
        self.stdout.write(f"granted {role} on {path} to {auth_id}")
