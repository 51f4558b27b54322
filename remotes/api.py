"""JSON API of remotes under /api2/json/ (PBS paths): config/remote[/<remote>[/test]].

Keys are PBS-style kebab-case (access-key, path-style); snake_case is accepted
on input too. The secret key is write-only: never part of an answer.
"""
import json

from django.http import JsonResponse, QueryDict
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from pbsweb.access import has_privilege, require
from remotes.forms import RemoteForm, check_values, clean_limits, provider_defaults
from remotes.models import Remote
from remotes.tasks import run_connection_test
from remotes.views import remove_remote

BOOL_FIELDS = ("path_style", "skip_if_none_match", "delete_via_delete_object", "no_checksum_headers")
TEXT_FIELDS = ("provider", "endpoint", "bucket", "region", "access_key", "secret_key", "ca_bundle",
               "tls_fingerprint", "comment")
WRITABLE = TEXT_FIELDS + BOOL_FIELDS + ("min_storage_days",) + RemoteForm.LIMITS


def remote_json(r: Remote) -> dict:
    return {
        "name": r.remote_id, "type": r.type, "provider": r.provider, "endpoint": r.endpoint,
        "bucket": r.bucket, "region": r.region, "access-key": r.access_key,
        "path-style": r.path_style, "skip-if-none-match": r.skip_if_none_match,
        "delete-via-delete-object": r.delete_via_delete_object, "no-checksum-headers": r.no_checksum_headers,
        "ca-bundle": bool(r.ca_bundle), "fingerprint": r.tls_fingerprint or None,
        "min-storage-days": r.min_storage_days, "comment": r.comment, "stored-bytes": r.stored_bytes,
        "request-rate": r.request_rate, "daily-cap-class-a": r.daily_cap_class_a,
        "daily-cap-class-b": r.daily_cap_class_b, "daily-cap-class-c": r.daily_cap_class_c,
        "monthly-budget": None if r.monthly_budget is None else float(r.monthly_budget), "on-cap": r.on_cap,
        "last-test": None if r.last_test_time is None else {
            "ok": r.last_test_ok, "time": int(r.last_test_time.timestamp()), "message": r.last_test_message,
            "latency-ms": r.last_test_latency_ms, "upid": r.last_test_upid or None},
    }


def _params(request) -> dict:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            raise ValueError("body: not valid JSON")
        if not isinstance(data, dict):
            raise ValueError("body: expected a JSON object")
        return data
    if request.method == "POST":
        return request.POST.dict()
    return QueryDict(request.body).dict()


def _bool(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError


def _parse(raw: dict) -> tuple[dict, dict]:
    """API params -> (model values, errors)."""
    values, errors, limits = {}, {}, {}
    aliases = {"fingerprint": "tls_fingerprint", "name": "remote_id", "id": "remote_id"}
    for key, value in raw.items():
        name = aliases.get(key, key.replace("-", "_"))
        if name == "type":
            if value != "s3":
                errors["type"] = "only 's3' remotes exist"
        elif name in BOOL_FIELDS:
            try:
                values[name] = _bool(value)
            except ValueError:
                errors[key] = "expected true or false"
        elif name == "min_storage_days":
            try:
                values[name] = int(value)
            except (TypeError, ValueError):
                errors[key] = "expected a whole number of days"
        elif name in TEXT_FIELDS or name == "remote_id":
            values[name] = "" if value is None else str(value).strip() if name != "secret_key" else str(value)
        elif name in RemoteForm.LIMITS:
            limits[name] = value
        elif name in ("digest", "delete"):
            pass
        else:
            errors[key] = "unknown parameter"
    limit_values, limit_errors = clean_limits(limits)
    values.update(limit_values)
    errors.update(limit_errors)
    return values, errors


def _error(errors, status=400):
    return JsonResponse({"errors": {k.replace("_", "-"): v for k, v in errors.items()}}, status=status)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def remotes(request):
    if request.method == "POST":
        return _create(request)
    return _list(request)


def _list(request):  # any user: filtered to the remotes they may audit (as PBS)
    data = [remote_json(r) for r in Remote.objects.all()
            if has_privilege(request.user, "Remote.Audit", f"/remote/{r.remote_id}")]
    return JsonResponse({"data": data})


@require("Remote.Modify", "/remote")
def _create(request):
    try:
        values, errors = _parse(_params(request))
    except ValueError as exc:
        return _error({"body": str(exc)})
    values.setdefault("remote_id", "")
    from remotes.engine.providers import detect_provider
    values.setdefault("provider", detect_provider(values.get("endpoint") or ""))
    for name in ("endpoint", "bucket", "region", "access_key", "secret_key"):
        values.setdefault(name, "")
    if not values["region"] and values["endpoint"]:
        from remotes.engine.providers import region_from_endpoint
        values["region"] = region_from_endpoint(values["endpoint"]) or ""
    errors.update(check_values(values))
    if errors:
        return _error(errors)
    remote = Remote(remote_id=values["remote_id"])
    for name, value in provider_defaults(values["provider"]).items():
        setattr(remote, name, value)
    for name in WRITABLE:
        if name in values:
            setattr(remote, name, values[name])
    remote.save()
    return JsonResponse({"data": None})


def _remote_path(kw):
    return f"/remote/{kw['remote']}"


@csrf_exempt
@require_http_methods(["GET", "PUT", "DELETE"])
def remote(request, remote):
    if request.method == "PUT":
        return _update(request, remote=remote)
    if request.method == "DELETE":
        return _delete(request, remote=remote)
    return _show(request, remote=remote)


def _get(remote):
    return Remote.objects.filter(remote_id=remote).first()


@require("Remote.Audit", _remote_path)
def _show(request, remote):
    obj = _get(remote)
    if obj is None:
        return JsonResponse({"errors": f"remote '{remote}' does not exist"}, status=404)
    return JsonResponse({"data": remote_json(obj)})


@require("Remote.Modify", _remote_path)
def _update(request, remote):
    obj = _get(remote)
    if obj is None:
        return JsonResponse({"errors": f"remote '{remote}' does not exist"}, status=404)
    try:
        values, errors = _parse(_params(request))
    except ValueError as exc:
        return _error({"body": str(exc)})
    if "remote_id" in values and values.pop("remote_id") != obj.remote_id:
        errors["name"] = "a remote's ID cannot be changed"
    errors.update(check_values(values, instance=obj))
    if errors:
        return _error(errors)
    for name in WRITABLE:
        if name in values and not (name == "secret_key" and not values[name]):
            setattr(obj, name, values[name])
    obj.save()
    if not obj.ca_bundle:
        obj.remove_ca_bundle()
    return JsonResponse({"data": None})


@require("Remote.Modify", _remote_path)
def _delete(request, remote):
    obj = _get(remote)
    if obj is None:
        return JsonResponse({"errors": f"remote '{remote}' does not exist"}, status=404)
    refusal = remove_remote(obj)
    if refusal:
        return JsonResponse({"errors": refusal}, status=409)
    return JsonResponse({"data": None})


@csrf_exempt
@require_http_methods(["POST"])
@require("Remote.Modify", _remote_path)
def remote_test(request, remote):
    obj = _get(remote)
    if obj is None:
        return JsonResponse({"errors": f"remote '{remote}' does not exist"}, status=404)
    try:
        raw = _params(request)
    except ValueError as exc:
        return _error({"body": str(exc)})
    try:
        write = _bool(raw.get("write", raw.get("write-probe", False)))
        probe = _bool(raw.get("probe", raw.get("probe-features", False)))
    except ValueError:
        return _error({"write": "expected true or false"})
    task, result = run_connection_test(request.user.username, remote=obj, record=True,
                                       write_probe=write, probe_features=probe)
    data = {"upid": task.upid, "ok": bool(result and result.ok and task.state != "error"),
            "latency-ms": result.latency_ms if result else None,
            "messages": ([{"level": m.level, "text": m.text} for m in result.messages] if result else
                         [{"level": "error", "text": task.status}] if task.state == "error" else []),
            "proposed": {k.replace("_", "-"): v for k, v in (result.proposed if result else {}).items()}}
    return JsonResponse({"data": data})


urlpatterns = [
    path("config/remote", remotes),
    path("config/remote/<str:remote>", remote),
    path("config/remote/<str:remote>/test", remote_test),
]
