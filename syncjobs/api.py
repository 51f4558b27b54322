"""JSON API paths of this app under /api2/json/ (PBS paths).

    GET  config/sync                 list (PBS sync.cfg field names)
    POST config/sync                 create
    GET/PUT/DELETE config/sync/<id>  show / update / remove
    GET  admin/sync                  jobs with their last-run state
    POST admin/sync/<id>/run         start a run -> {"data": UPID}
    GET  admin/sync/<id>/plan        the next run's plan (syncjobs.plan.job_plan)
    GET/POST config/traffic-control, GET/PUT/DELETE config/traffic-control/<rule>
"""
import json

from django.http import JsonResponse, QueryDict
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from pbsweb.access import has_privilege, require
from pbsweb.errors import UserError
from syncjobs.forms import SyncJobForm, TrafficControlForm, form_data_from_api, job_to_data, job_to_json, rate_text
from syncjobs.models import JOB_PRIV, SyncJob, TrafficControlRule, permission_problem
from syncjobs.plan import job_plan


def _params(request) -> dict:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            raise ValueError("body: not valid JSON")
        if not isinstance(data, dict):
            raise ValueError("body: expected a JSON object")
        return data
    qd = request.POST if request.method == "POST" else QueryDict(request.body)
    return {k: (qd.getlist(k) if len(qd.getlist(k)) > 1 else qd.get(k)) for k in qd}


def _error(message, field=None, status=400):
    if field:
        return JsonResponse({"errors": {field: message}}, status=status)
    return JsonResponse({"errors": message}, status=status)


def _form_error(form):
    name, errors = next(iter(form.errors.items()))
    label = form.CLI_NAMES.get(name, name)
    return JsonResponse({"errors": {label: errors[0]}}, status=400)


def _visible(request, job: SyncJob) -> bool:
    return has_privilege(request.user, "Datastore.Audit", job.acl_path)


def _jobs():
    return SyncJob.objects.select_related("store", "remote", "last_task")


def _job_path(kw):
    name = SyncJob.objects.filter(job_id=kw.get("id")).values_list("store__name", flat=True).first()
    return f"/datastore/{name}" if name else "/"


# -- config/sync ----------------------------------------------------------------------------

@csrf_exempt
@require_http_methods(["GET", "POST"])
def sync_jobs(request):
    if request.method == "POST":
        return _create(request)
    return _list(request)


def _list(request):
    return JsonResponse({"data": [job_to_json(j) for j in _jobs() if _visible(request, j)]})


def _create(request):
    try:
        params = _params(request)
    except ValueError as e:
        return _error(str(e), "body")
    problem = permission_problem(request.user, params.get("store"), params.get("remote"),
                                 params.get("direction", "push"))
    if problem:
        return JsonResponse({"errors": problem}, status=403)
    try:
        data = form_data_from_api(params, {"enabled": "true", "direction": "push"})
    except KeyError as e:
        return _error("unknown parameter", e.args[0])
    form = SyncJobForm(data)
    if not form.is_valid():
        return _form_error(form)
    form.save()
    return JsonResponse({"data": None})


@csrf_exempt
@require_http_methods(["GET", "PUT", "DELETE"])
def sync_job(request, id):
    if request.method == "PUT":
        return _update(request, id=id)
    if request.method == "DELETE":
        return _delete(request, id=id)
    return _show(request, id=id)


def _get(id):
    return _jobs().filter(job_id=id).first()


def _missing(id):
    return JsonResponse({"errors": f"sync job '{id}' does not exist"}, status=404)


@require("Datastore.Audit", _job_path)
def _show(request, id):
    job = _get(id)
    return JsonResponse({"data": job_to_json(job)}) if job else _missing(id)


@require(JOB_PRIV, _job_path)
def _update(request, id):
    job = _get(id)
    if job is None:
        return _missing(id)
    try:
        params = _params(request)
    except ValueError as e:
        return _error(str(e), "body")
    if "id" in params and params.pop("id") != job.job_id:
        return _error("a sync job's ID cannot be changed", "id")
    base = {k: ("true" if v is True else "" if v is False else v) for k, v in job_to_data(job).items()}
    deletes = params.pop("delete", None) or []
    if isinstance(deletes, str):
        deletes = [d for d in deletes.replace(",", " ").split() if d]
    try:
        for name in deletes:
            base = form_data_from_api({name: ""}, base)
        data = form_data_from_api(params, base)
    except KeyError as e:
        return _error("unknown parameter", e.args[0])
    problem = permission_problem(request.user, data.get("store"),
                                 *job.remote_change(data.get("remote"), data.get("direction")))
    if problem:
        return JsonResponse({"errors": problem}, status=403)
    form = SyncJobForm(data, instance=job)
    if not form.is_valid():
        return _form_error(form)
    form.save()
    return JsonResponse({"data": None})


@require(JOB_PRIV, _job_path)
def _delete(request, id):
    job = _get(id)
    if job is None:
        return _missing(id)
    job.delete()
    return JsonResponse({"data": None})


# -- admin/sync -----------------------------------------------------------------------------

@require_http_methods(["GET"])
def sync_status(request):
    return JsonResponse({"data": [job_to_json(j) for j in _jobs() if _visible(request, j)]})


@csrf_exempt
@require_http_methods(["POST"])
@require(JOB_PRIV, _job_path)
def sync_run(request, id):
    job = _get(id)
    if job is None:
        return _missing(id)
    try:
        params = _params(request)
    except ValueError as e:
        return _error(str(e), "body")
    reconcile = str(params.get("reconcile", "")).lower() in ("1", "true", "yes", "on")
    task = job.launch(request.user.username, reconcile=reconcile)
    return JsonResponse({"data": task.upid})


@require_http_methods(["GET"])
@require("Datastore.Audit", _job_path)
def sync_plan(request, id):
    job = _get(id)
    if job is None:
        return _missing(id)
    remote_path = f"/remote/{job.remote.remote_id}"
    if not has_privilege(request.user, "Remote.Audit", remote_path):
        return JsonResponse({"errors": f"permission check failed: Remote.Audit on {remote_path}"}, status=403)
    try:
        return JsonResponse({"data": job_plan(job)})
    except UserError as e:
        return _error(e.message, e.field)


# -- config/traffic-control -----------------------------------------------------------------

def rule_json(rule: TrafficControlRule) -> dict:
    return {"name": rule.name, "rate-out": rate_text(rule.rate_out) or None,
            "burst-out": rate_text(rule.burst_out) or None, "timeframe": rule.timeframes or [],
            "remote": rule.remote_names(), "comment": rule.comment}


def _rule_form_data(params: dict, base: dict | None = None) -> QueryDict:
    names = {"name": "name", "rate-out": "rate_out", "rate_out": "rate_out", "burst-out": "burst_out",
             "burst_out": "burst_out", "timeframe": "timeframes", "timeframes": "timeframes",
             "remote": "remotes", "remotes": "remotes", "comment": "comment"}
    data = dict(base or {})
    for key, value in params.items():
        if key in ("digest", "delete"):
            continue
        if key not in names:
            raise KeyError(key)
        data[names[key]] = value
    qd = QueryDict(mutable=True)
    for key, value in data.items():
        if isinstance(value, (list, tuple)):
            if key == "timeframes":
                qd[key] = "\n".join(str(v) for v in value)
            else:
                qd.setlist(key, [str(v) for v in value])
        elif key == "remotes":
            qd.setlist(key, [v for v in str(value or "").replace(",", " ").split() if v])
        else:
            qd[key] = "" if value is None else str(value)
    return qd


@csrf_exempt
@require_http_methods(["GET", "POST"])
def rules(request):
    if request.method == "POST":
        return _rule_create(request)
    return _rule_list(request)


@require("Sys.Audit")
def _rule_list(request):
    return JsonResponse({"data": [rule_json(r) for r in TrafficControlRule.objects.prefetch_related("remotes")]})


@require("Sys.Modify")
def _rule_create(request):
    try:
        form = TrafficControlForm(_rule_form_data(_params(request)))
    except ValueError as e:
        return _error(str(e), "body")
    except KeyError as e:
        return _error("unknown parameter", e.args[0])
    if not form.is_valid():
        return _form_error(form)
    form.save()
    return JsonResponse({"data": None})


@csrf_exempt
@require_http_methods(["GET", "PUT", "DELETE"])
def rule(request, rule):
    obj = TrafficControlRule.objects.filter(name=rule).first()
    if request.method == "GET":
        return _rule_show(request, obj=obj, rule=rule)
    if request.method == "PUT":
        return _rule_update(request, obj=obj, rule=rule)
    return _rule_delete(request, obj=obj, rule=rule)


def _rule_missing(rule):
    return JsonResponse({"errors": f"traffic-control rule '{rule}' does not exist"}, status=404)


@require("Sys.Audit")
def _rule_show(request, obj, rule):
    return JsonResponse({"data": rule_json(obj)}) if obj else _rule_missing(rule)


@require("Sys.Modify")
def _rule_update(request, obj, rule):
    if obj is None:
        return _rule_missing(rule)
    base = {"name": obj.name, "rate_out": rate_text(obj.rate_out), "burst_out": rate_text(obj.burst_out),
            "timeframes": list(obj.timeframes or []), "remotes": obj.remote_names(), "comment": obj.comment}
    try:
        form = TrafficControlForm(_rule_form_data(_params(request), base), instance=obj)
    except ValueError as e:
        return _error(str(e), "body")
    except KeyError as e:
        return _error("unknown parameter", e.args[0])
    if not form.is_valid():
        return _form_error(form)
    form.save()
    return JsonResponse({"data": None})


@require("Sys.Modify")
def _rule_delete(request, obj, rule):
    if obj is None:
        return _rule_missing(rule)
    obj.delete()
    return JsonResponse({"data": None})


urlpatterns = [
    path("config/sync", sync_jobs),
    path("config/sync/<str:id>", sync_job),
    path("admin/sync", sync_status),
    path("admin/sync/<str:id>/run", sync_run),
    path("admin/sync/<str:id>/plan", sync_plan),
    path("config/traffic-control", rules),
    path("config/traffic-control/<str:rule>", rule),
]
