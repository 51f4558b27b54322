"""Users and API tokens as `proxmox-backup-manager user` (DESIGN §8):

    user create USER@REALM [--password P] | list | remove USER@REALM
    user generate-token USER@REALM NAME          # the secret is printed once
"""
import json
import re

from django.contrib.auth import get_user_model
from django.db import transaction

from pbsweb.access import REALMS
from pbsweb.apitokens import create_token
from pbsweb.cli import BaseCommand, add_output_format, print_output, usage_error
from pbsweb.models import ApiToken

USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}@([A-Za-z0-9_-]+)$")
TOKEN_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")
MIN_PASSWORD = 8


def check_userid(value: str, field: str = "userid") -> str:
    m = USER_RE.match(value or "")
    if not m:
        raise usage_error(f"{field}: {value!r} is not USER@REALM (letters, digits, '.', '_', '-')")
    if m.group(1) not in {r for r, _ in REALMS}:
        raise usage_error(f"{field}: realm '{m.group(1)}' does not exist (realms: "
                          f"{', '.join(r for r, _ in REALMS)})")
    return value


def existing_user(userid: str, field: str = "userid"):
    user = get_user_model().objects.filter(username=check_userid(userid, field)).first()
    if user is None:
        raise usage_error(f"{field}: no user '{userid}'")
    return user


class Command(BaseCommand):
    help = "Users and API tokens: create, list, remove, generate-token."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        c = sub.add_parser("create")
        c.add_argument("userid")
        c.add_argument("--password", help="without one, the user can only use API tokens")
        c.add_argument("--comment", default="")
        add_output_format(sub.add_parser("list"))
        r = sub.add_parser("remove")
        r.add_argument("userid")
        g = sub.add_parser("generate-token")
        g.add_argument("userid")
        g.add_argument("name")
        g.add_argument("--comment", default="")
        add_output_format(g)

    def handle(self, *args, action, **opts):
        getattr(self, action.replace("-", "_"))(**opts)

    def create(self, userid, password=None, comment="", **_):
        check_userid(userid)
        if password is not None and len(password) < MIN_PASSWORD:
            raise usage_error(f"password: at least {MIN_PASSWORD} characters are required")
        users = get_user_model().objects
        if users.filter(username=userid).exists():
            raise usage_error(f"userid: '{userid}' already exists")
        user = users.create_user(username=userid, password=password)
        if password is None:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        self.stdout.write(f"created user {userid}")

    def list(self, output_format="text", **_):
        items = [{"userid": u.username, "enable": u.is_active, "superuser": u.is_superuser,
                  "tokens": ", ".join(t.name for t in u.api_tokens.all())}
                 for u in get_user_model().objects.order_by("username").prefetch_related("api_tokens")]
        print_output(self.stdout, output_format, ["userid", "enable", "tokens"], ["userid", "enable", "tokens"], items)

    def remove(self, userid, **_):
        user = existing_user(userid)
        if user.is_superuser and get_user_model().objects.filter(is_superuser=True).count() == 1:
            raise usage_error(f"userid: '{userid}' is the last administrator; refusing to remove it")
        user.delete()       # its ACL entries and tokens go with it
        self.stdout.write(f"removed user {userid}")

    def generate_token(self, userid, name, comment="", output_format="text", **_):
        user = existing_user(userid)
        if not TOKEN_NAME_RE.match(name):
            raise usage_error(f"name: {name!r} is not a valid token name (letters, digits, '.', '_', '-')")
        with transaction.atomic():
            if ApiToken.objects.filter(user=user, name=name).exists():
                raise usage_error(f"name: token '{userid}!{name}' already exists")
            token, secret = create_token(user, name, comment)
        doc = {"tokenid": token.tokenid, "value": secret}
        if output_format == "text":
            self.stdout.write(f"tokenid: {token.tokenid}\nvalue: {secret}\n"
                              "The secret is shown only now; store it safely.")
        else:
            self.stdout.write(json.dumps(doc))
