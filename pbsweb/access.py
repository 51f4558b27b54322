"""Login and access control as PBS: roles are sets of privileges, granted on paths.

Paths: `/`, `/datastore/{store}`, `/remote/{remote}`, `/system/...`. A grant on a
path applies below it when it propagates; a grant on a deeper path overrides
what the user inherited from above (PBS acl.cfg semantics).
"""
import json
from functools import wraps

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect

from pbsweb.security import plain_error

PRIVILEGES = [
    "Sys.Audit", "Sys.Modify", "Permissions.Modify",
    "Datastore.Audit", "Datastore.Allocate", "Datastore.Modify", "Datastore.Read",
    "Datastore.Verify", "Datastore.Backup", "Datastore.Prune",
    "Remote.Audit", "Remote.Modify", "Remote.Read", "Remote.DatastoreBackup",
    "Remote.DatastorePrune", "Remote.DatastoreModify",
]

_DS_ADMIN = {"Datastore.Audit", "Datastore.Modify", "Datastore.Read", "Datastore.Verify",
             "Datastore.Backup", "Datastore.Prune"}
_REMOTE_PUSH = {"Remote.Audit", "Remote.DatastoreBackup"}

ROLES: dict[str, set[str]] = {
    "Admin": set(PRIVILEGES),
    "NoAccess": set(),
    "Audit": {"Sys.Audit", "Datastore.Audit", "Remote.Audit"},
    "DatastoreAdmin": _DS_ADMIN,
    "DatastoreReader": {"Datastore.Audit", "Datastore.Verify", "Datastore.Read"},
    "DatastoreBackup": {"Datastore.Backup"},
    "DatastorePowerUser": {"Datastore.Backup", "Datastore.Prune"},
    "DatastoreAudit": {"Datastore.Audit"},
    "RemoteAudit": {"Remote.Audit"},
    "RemoteAdmin": {"Remote.Audit", "Remote.Modify", "Remote.Read"},
    "RemoteSyncOperator": {"Remote.Audit", "Remote.Read"},
    "RemoteSyncPushOperator": _REMOTE_PUSH,
    "RemoteDatastorePowerUser": _REMOTE_PUSH | {"Remote.DatastorePrune"},
    "RemoteDatastoreAdmin": _REMOTE_PUSH | {"Remote.DatastorePrune", "Remote.DatastoreModify"},
}

REALMS = [("pbs", "Proxmox Backup authentication server")]


def _ancestors(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    return ["/"] + ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def user_privileges(user, path: str = "/") -> set[str]:
    """The user's privileges on `path`; for a request made with an API token (`user.api_token`,
    set by LoginRequiredMiddleware) only those the token's own entries grant as well (PBS)."""
    if not user.is_authenticated or not user.is_active:
        return set()
    privs = set(PRIVILEGES) if user.is_superuser else _acl_privileges(user.acl.all(), path)
    token = getattr(user, "api_token", None)
    if token is not None:
        privs &= _acl_privileges(token.acl.all(), path)
    return privs


def _acl_privileges(entries, path: str) -> set[str]:
    entries = list(entries)
    privs: set[str] = set()
    levels = _ancestors(path)
    for depth, level in enumerate(levels):
        here = [e for e in entries if e.path.rstrip("/") == level.rstrip("/")
                and (e.propagate or depth == len(levels) - 1)]
        if here:  # the most specific path with grants wins
            privs = set().union(*(ROLES.get(e.role, set()) for e in here))
    return privs


def has_privilege(user, priv: str, path: str = "/") -> bool:
    return priv in user_privileges(user, path)


def require(priv: str, path="/"):
    """View decorator: 403 unless the user holds `priv` on `path` (a string, or a
    callable taking the view's kwargs, e.g. lambda kw: f"/datastore/{kw['store']}")."""
    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            target = path(kwargs) if callable(path) else path
            if not has_privilege(request.user, priv, target):
                message = f"permission check failed: {priv} on {target}"
                if request.path.startswith("/api2/"):
                    raise PermissionDenied(message)  # the API layer answers it (pbsweb/api.py)
                return plain_error(message, status=403)
            return view(request, *args, **kwargs)
        return wrapper
    return decorator


# The client protocol authenticates every request itself, by token or user name and password
# and never by cookie (datastores/protocol.py).
PUBLIC_PREFIXES = ("/login/", "/static/", "/api2/json/access/ticket", "/api2/json/backup/", "/api2/json/reader/")


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v) for v in value)
    return False


def nul_byte_field(request) -> str | None:
    """The URL part or parameter holding a NUL byte, if any. No name, path or setting may hold
    one (PostgreSQL cannot store it), so such a request is refused before any view runs; form
    fields are left to the forms, which name the field themselves."""
    if "\x00" in request.path:
        return "path"
    for key, values in request.GET.lists():
        if _has_nul(key) or _has_nul(values):
            return key.replace("\x00", "\\x00")
    if request.path.startswith("/api2/") and request.method in ("POST", "PUT", "DELETE", "PATCH"):
        if request.content_type == "application/json":
            try:
                doc = json.loads(request.body or b"{}")
            except ValueError:
                return None
            items = doc.items() if isinstance(doc, dict) else []
        else:
            from django.http import QueryDict
            items = (request.POST if request.method == "POST" else QueryDict(request.body)).lists()
        for key, value in items:
            if _has_nul(key) or _has_nul(value):
                return str(key).replace("\x00", "\\x00")
    return None


class LoginRequiredMiddleware:
    """Every page and API path needs a login; the API answers 401 instead of redirecting."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.user.is_authenticated and not request.path.startswith(PUBLIC_PREFIXES):
            from pbsweb.apitokens import authenticate_token
            token_user = authenticate_token(request)
            if token_user is not None:
                token_user.api_token = request._api_token  # its rights: token's ACL ∩ the user's
                request.user = token_user
                # Tokens are not cookies: no cross-site request can carry one.
                request._dont_enforce_csrf_checks = True
            elif request.path.startswith("/api2/"):
                return JsonResponse({"errors": "authentication required"}, status=401)
            else:
                return redirect(f"{settings.LOGIN_URL}?next={request.get_full_path()}")
        field = nul_byte_field(request)
        if field is not None:
            message = "NUL bytes are not allowed"
            if request.path.startswith("/api2/"):
                return JsonResponse({"errors": {field: message}}, status=400)
            return plain_error(f"{field}: {message}")
        return self.get_response(request)


def forbidden(reason) -> HttpResponse:
    """A page's 403 naming the missing privilege, as plain text (the reason may quote input)."""
    return plain_error(str(reason), status=403)


class _Root:
    """Who the command line acts as by default: root@pam, every privilege (as proxmox-backup-manager)."""

    username = "root@pam"
    is_authenticated = is_active = is_superuser = True


CLI_ROOT = _Root()
