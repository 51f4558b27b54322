"""JSON API of remotes under /api2/json/ (PBS paths): config/remote[/<remote>[/test]].

Keys are PBS-style kebab-case (access-key, path-style); snake_case is accepted
on input too. The secret key is write-only: never part of an answer.
"""
from django.urls import path

from pbsweb.access import has_privilege, require
from pbsweb.api import endpoint, ok, parse_bool, parse_text, parse_uint
from pbsweb.errors import NotFound, UserError, field_errors
from remotes.forms import LIMIT_FIELDS, PRICE_FIELDS
from remotes.models import Remote
from remotes.serializers import connection_test_json, remote_json
from remotes.services import remove_remote, save_remote
from remotes.tasks import run_connection_test

BOOL_FIELDS = ("path_style", "skip_if_none_match", "delete_via_delete_object", "no_checksum_headers")
TEXT_FIELDS = ("remote_id", "provider", "endpoint", "bucket", "region", "access_key", "secret_key", "ca_bundle",
               "tls_fingerprint", "comment", "object_lock_mode")
ALIASES = {"fingerprint": "tls_fingerprint", "name": "remote_id", "id": "remote_id"}


def _values(params: dict) -> dict:
    """API parameters -> model values (UserError naming the parameter)."""
    values = {}
    for key, value in params.items():
        name = ALIASES.get(key, key.replace("-", "_"))
        if name == "type":
            if value != "s3":
                raise UserError("type", "only 's3' remotes exist")
        elif name in BOOL_FIELDS:
            values[name] = parse_bool(value, key)
        elif name in ("min_storage_days", "object_lock_days"):
            values[name] = parse_uint(value, key)
        elif name in TEXT_FIELDS:
            text = parse_text(value, key)
            values[name] = text if name == "secret_key" else text.strip()
        elif name in LIMIT_FIELDS + PRICE_FIELDS:  # checked by the service with the dialog's rules; null clears
            values[name] = "" if value is None else value
        elif name not in ("digest", "delete"):
            raise UserError(key, "unknown parameter")
    return {k: v for k, v in values.items() if v is not None}


def _save(params: dict, remote: Remote | None = None) -> None:
    try:
        save_remote(_values(params), remote)
    except UserError as e:  # the service names model fields; the API answers with its own names
        errors = getattr(e, "errors", None) or {e.field: e.message}
        raise field_errors({"name" if k == "remote_id" else k.replace("_", "-"): v for k, v in errors.items()}) \
            from None


def _get(remote: str) -> Remote:
    obj = Remote.objects.filter(remote_id=remote).first()
    if obj is None:
        raise NotFound("remote", f"remote '{remote}' does not exist")
    return obj


def _remote_path(kw):
    return f"/remote/{kw['remote']}"


def remote_list(request):  # any user: filtered to the remotes they may audit (as PBS)
    return ok([remote_json(r) for r in Remote.objects.all()
               if has_privilege(request.user, "Remote.Audit", f"/remote/{r.remote_id}")])


@require("Remote.Modify", "/remote")
def remote_create(request):
    _save(request.params)
    return ok()


@require("Remote.Audit", _remote_path)
def remote_show(request, remote):
    return ok(remote_json(_get(remote)))


@require("Remote.Modify", _remote_path)
def remote_update(request, remote):
    _save(request.params, _get(remote))
    return ok()


@require("Remote.Modify", _remote_path)
def remote_delete(request, remote):
    remove_remote(_get(remote))
    return ok()


@require("Remote.Modify", _remote_path)
def remote_test(request, remote):
    obj = _get(remote)
    p = request.params
    write = parse_bool(p.get("write", p.get("write-probe")), "write", False)
    probe = parse_bool(p.get("probe", p.get("probe-features")), "probe", False)
    task, result = run_connection_test(request.user.username, remote=obj, record=True,
                                       write_probe=write, probe_features=probe)
    return ok(connection_test_json(task, result))


urlpatterns = [
    path("config/remote", endpoint(GET=remote_list, POST=remote_create)),
    path("config/remote/<str:remote>", endpoint(GET=remote_show, PUT=remote_update, DELETE=remote_delete)),
    path("config/remote/<str:remote>/test", endpoint(POST=remote_test)),
]
