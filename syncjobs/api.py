"""JSON API paths of this app under /api2/json/ (PBS paths).

    GET  config/sync                 list (PBS sync.cfg field names)
    POST config/sync                 create
    GET/PUT/DELETE config/sync/<id>  show / update / remove
    GET  admin/sync                  jobs with their last-run state
    POST admin/sync/<id>/run         start a run -> {"data": UPID} (as-of: pull the bucket as it was then)
    GET  admin/sync/<id>/plan        the next run's plan (syncjobs.plan.job_plan)
    GET  admin/sync/<id>/prune-simulate  the remote retention's keep/remove marks (keep-* or the job's)
    GET/POST config/traffic-control, GET/PUT/DELETE config/traffic-control/<rule>

Parameters, errors and CSRF: pbsweb.api.endpoint. Changes to jobs: syncjobs.services.
"""
from django.core.exceptions import PermissionDenied
from django.http import QueryDict
from django.urls import path

from pbsweb.access import has_privilege, require
from pbsweb.api import endpoint, ok, parse_bool, parse_text
from pbsweb.errors import NotFound, UserError
from syncjobs.engine.recover import parse_as_of
from syncjobs.forms import SyncJobForm, TrafficControlForm, form_data_from_api, job_edit_data, rate_text
from syncjobs.models import JOB_PRIV, KEEP_FIELDS, SyncJob, TrafficControlRule
from syncjobs.plan import job_plan, keep_options, prune_simulation
from syncjobs.serializers import job_to_json, rule_json
from syncjobs.services import form_error, remove_sync_job, save_sync_job


def _form_data(params: dict, base: dict) -> dict:
    try:
        return form_data_from_api(params, base)
    except KeyError as e:
        raise UserError(str(e.args[0]), "unknown parameter") from None


def _visible(request, job: SyncJob) -> bool:
    return has_privilege(request.user, "Datastore.Audit", job.acl_path)


def _jobs():
    return SyncJob.objects.select_related("store", "remote", "last_task")


def _job_path(kw):
    name = SyncJob.objects.filter(job_id=kw.get("id")).values_list("store__name", flat=True).first()
    return f"/datastore/{name}" if name else "/"


def _get(id) -> SyncJob:
    job = _jobs().filter(job_id=id).first()
    if job is None:
        raise NotFound("id", f"sync job '{id}' does not exist")
    return job


# -- config/sync, admin/sync -----------------------------------------------------------------

def job_list(request):
    return ok([job_to_json(j) for j in _jobs() if _visible(request, j)])


def job_create(request):
    save_sync_job(request.user, SyncJobForm(_form_data(request.params, {"enabled": "true", "direction": "push"})))
    return ok()


@require("Datastore.Audit", _job_path)
def job_show(request, id):
    return ok(job_to_json(_get(id)))


@require(JOB_PRIV, _job_path)
def job_update(request, id):
    job = _get(id)
    params = dict(request.params)
    if "id" in params and params.pop("id") != job.job_id:
        raise UserError("id", "a sync job's ID cannot be changed")
    deletes = params.pop("delete", None) or []  # options reset to their defaults, as PBS's `delete`
    if not isinstance(deletes, list):
        deletes = parse_text(deletes, "delete").replace(",", " ").split()
    data = _form_data({str(name): "" for name in deletes}, job_edit_data(job))
    save_sync_job(request.user, SyncJobForm(_form_data(params, data), instance=job))
    return ok()


@require(JOB_PRIV, _job_path)
def job_delete(request, id):
    remove_sync_job(request.user, _get(id))
    return ok()


@require(JOB_PRIV, _job_path)
def job_run(request, id):
    reconcile = parse_bool(request.params.get("reconcile"), "reconcile", False)
    job = _get(id)
    as_of = request.params.get("as-of")
    if as_of is not None:  # pull only: the bucket as it was then
        if job.direction != "pull":
            raise UserError("as-of", f"only a pull job reads the bucket as of a time ('{job.job_id}' pushes)")
        try:
            as_of = parse_as_of(parse_text(as_of, "as-of")).isoformat()
        except ValueError as e:
            raise UserError("as-of", str(e)) from None
    return ok(job.launch(request.user.username, reconcile=reconcile, as_of=as_of).upid)


@require("Datastore.Audit", _job_path)
def job_prune_simulate(request, id):
    """The remote retention's prune simulator: keep-* parameters, or the job's own keep options."""
    job = _get(id)
    remote_path = f"/remote/{job.remote.remote_id}"
    if not has_privilege(request.user, "Remote.Audit", remote_path):  # it lists the bucket's snapshots
        raise PermissionDenied(f"permission check failed: Remote.Audit on {remote_path}")
    values = {}
    for name in KEEP_FIELDS:
        raw = request.params.get(name.replace("_", "-"))
        if raw is None or raw == "":
            continue
        try:
            values[name] = int(raw)
            if values[name] < 0:
                raise ValueError
        except (TypeError, ValueError):
            raise UserError(name.replace("_", "-"), f"expected a whole number >= 0, not {raw!r}") from None
    data = prune_simulation(job, keep_options(values, job) if values else None)
    data.pop("rows")
    return ok(data)


@require("Datastore.Audit", _job_path)
def job_plan_show(request, id):
    job = _get(id)
    remote_path = f"/remote/{job.remote.remote_id}"
    if not has_privilege(request.user, "Remote.Audit", remote_path):  # the plan lists the bucket
        raise PermissionDenied(f"permission check failed: Remote.Audit on {remote_path}")
    return ok(job_plan(job))


# -- config/traffic-control -----------------------------------------------------------------

def _rule_form_data(params: dict, base: dict | None = None) -> QueryDict:
    names = {"name": "name", "rate-out": "rate_out", "rate_out": "rate_out", "burst-out": "burst_out",
             "burst_out": "burst_out", "timeframe": "timeframes", "timeframes": "timeframes",
             "remote": "remotes", "remotes": "remotes", "comment": "comment"}
    data = dict(base or {})
    for key, value in params.items():
        if key in ("digest", "delete"):
            continue
        if key not in names:
            raise UserError(key, "unknown parameter")
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


@require("Sys.Audit")
def rule_list(request):
    return ok([rule_json(r) for r in TrafficControlRule.objects.prefetch_related("remotes")])


def _save_rule(form: TrafficControlForm) -> None:
    if not form.is_valid():
        raise form_error(form)
    form.save()


@require("Sys.Modify")
def rule_create(request):
    _save_rule(TrafficControlForm(_rule_form_data(request.params)))
    return ok()


def _rule(name) -> TrafficControlRule:
    rule = TrafficControlRule.objects.filter(name=name).first()
    if rule is None:
        raise NotFound("name", f"traffic-control rule '{name}' does not exist")
    return rule


@require("Sys.Audit")
def rule_show(request, rule):
    return ok(rule_json(_rule(rule)))


@require("Sys.Modify")
def rule_update(request, rule):
    obj = _rule(rule)
    base = {"name": obj.name, "rate_out": rate_text(obj.rate_out), "burst_out": rate_text(obj.burst_out),
            "timeframes": list(obj.timeframes or []), "remotes": obj.remote_names(), "comment": obj.comment}
    _save_rule(TrafficControlForm(_rule_form_data(request.params, base), instance=obj))
    return ok()


@require("Sys.Modify")
def rule_delete(request, rule):
    _rule(rule).delete()
    return ok()


urlpatterns = [
    path("config/sync", endpoint(GET=job_list, POST=job_create)),
    path("config/sync/<str:id>", endpoint(GET=job_show, PUT=job_update, DELETE=job_delete)),
    path("admin/sync", endpoint(GET=job_list)),
    path("admin/sync/<str:id>/run", endpoint(POST=job_run)),
    path("admin/sync/<str:id>/plan", endpoint(GET=job_plan_show)),
    path("admin/sync/<str:id>/prune-simulate", endpoint(GET=job_prune_simulate)),
    path("config/traffic-control", endpoint(GET=rule_list, POST=rule_create)),
    path("config/traffic-control/<str:rule>", endpoint(GET=rule_show, PUT=rule_update, DELETE=rule_delete)),
]
