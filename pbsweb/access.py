"""Login and access control as PBS: roles are sets of privileges, granted on paths.

Paths: `/`, `/datastore/{store}`, `/remote/{remote}`, `/system/...`. A grant on a
path applies below it when it propagates; a grant on a deeper path overrides
what the user inherited from above (PBS acl.cfg semantics).
"""
from functools import wraps

from django.conf import settings
from django.http import HttpResponseForbidden, JsonResponse
from django.shortcuts import redirect

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
    if not user.is_authenticated or not user.is_active:
        return set()
    if user.is_superuser:
        return set(PRIVILEGES)
    entries = list(user.acl.all())
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
                    return JsonResponse({"errors": message}, status=403)
                return HttpResponseForbidden(message)
            return view(request, *args, **kwargs)
        return wrapper
    return decorator


PUBLIC_PREFIXES = ("/login/", "/static/", "/api2/json/access/ticket")


class LoginRequiredMiddleware:
    """Every page and API path needs a login; the API answers 401 instead of redirecting."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.user.is_authenticated and not request.path.startswith(PUBLIC_PREFIXES):
            from pbsweb.apitokens import authenticate_token
            token_user = authenticate_token(request)
            if token_user is not None:
                request.user = token_user
                # Tokens are not cookies: no cross-site request can carry one.
                request._dont_enforce_csrf_checks = True
            elif request.path.startswith("/api2/"):
                return JsonResponse({"errors": "authentication required"}, status=401)
            else:
                return redirect(f"{settings.LOGIN_URL}?next={request.get_full_path()}")
        return self.get_response(request)
