"""Pages: Configuration → Sync Jobs, Datastore → Sync Jobs, Configuration → Traffic Control.

Dialogs are fragments swapped into #dialog-slot by htmx; a bad value comes
back as the same dialog with the error under its field (200 to htmx so it is
swapped, 400 otherwise), nothing saved. Long work (a sync run) is a task.
"""
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.encoding import iri_to_uri
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from datastores.forms import KeepForm
from datastores.models import Datastore
from pbsweb.access import forbidden, has_privilege, require
from pbsweb.errors import UserError
from syncjobs.forms import SCHEDULE_PRESETS, RunAsOfForm, SyncJobForm, TrafficControlForm
from syncjobs.models import JOB_PRIV, KEEP_FIELDS, SyncJob, TrafficControlRule
from syncjobs.plan import job_plan, keep_options, plan_rows, prune_simulation
from syncjobs.services import remove_sync_job, save_sync_job
RULE_PRIV = "Sys.Modify"


def _job_acl_path(kwargs) -> str:
    name = SyncJob.objects.filter(job_id=kwargs.get("job")).values_list("store__name", flat=True).first()
    return f"/datastore/{name}" if name else "/"


def _store_path(store: str | None) -> str:
    return f"/datastore/{store}" if store else "/"


def _next_url(request, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    return target if target.startswith("/") and not target.startswith("//") else default


def _done(request, url: str):
    """After a successful change: htmx follows HX-Redirect, a plain form a 302."""
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = iri_to_uri(url)  # a UPID's escapes (\x3a) must not reach the browser raw
        return response
    return redirect(url)


def _jobs(request, store: Datastore | None = None) -> list[SyncJob]:
    """The jobs of the stores the user may audit (all users see the list, filtered, as PBS)."""
    jobs = SyncJob.objects.select_related("store", "remote", "last_task")
    if store is not None:
        jobs = jobs.filter(store=store)
    return [j for j in jobs if has_privilege(request.user, "Datastore.Audit", j.acl_path)]


def _list_context(request, store: Datastore | None):
    jobs = _jobs(request, store)
    return {
        "jobs": jobs, "store": store, "current_store": store.name if store else None,
        "list_url": f"/datastore/{store.name}/sync-jobs/" if store else "/sync-jobs/",
        "any_running": any(j.last_task and j.last_task.running for j in jobs),
        "tab": "sync",
        "can_modify": has_privilege(request.user, JOB_PRIV, _store_path(store.name if store else None)),
    }


def _render_list(request, store: Datastore | None, extra: dict | None = None, status: int = 200):
    ctx = _list_context(request, store)
    ctx.update(extra or {})
    if request.htmx and request.GET.get("fragment") == "rows":
        return render(request, "syncjobs/_job_rows.html", ctx)
    return render(request, "syncjobs/job_list.html", ctx, status=status)


@require_safe
def job_list(request):
    return _render_list(request, None)


@require_safe
@require("Datastore.Audit", lambda kw: f"/datastore/{kw['store']}")
def store_job_list(request, store):
    return _render_list(request, get_object_or_404(Datastore, name=store))


def _save(request, form: SyncJobForm, next_url: str):
    """Save through the service: done (redirect), refused (403 naming the privilege), or None
    when the dialog must show its errors again."""
    try:
        save_sync_job(request.user, form)
    except PermissionDenied as e:
        return forbidden(e)
    except UserError:
        return None
    return _done(request, next_url)


def _dialog_response(request, form, *, action: str, title_action: str, next_url: str, store_name=None,
                     plan_url: str = "", sim_url: str = ""):
    ctx = {"form": form, "action": action, "title_action": title_action, "next": next_url, "plan_url": plan_url,
           "sim_url": sim_url,
           "schedule_presets": SCHEDULE_PRESETS,
           "direction": (form.data.get("direction") if form.is_bound else form.initial.get("direction"))
           or "push"}
    if request.htmx:
        return render(request, "syncjobs/job_dialog.html", ctx)
    # without htmx (no JavaScript, tests): the page with the dialog open
    store = Datastore.objects.filter(name=store_name).first() if store_name else None
    ctx["show_dialog"] = True
    status = 400 if form.is_bound and form.errors else 200
    return _render_list(request, store, {"dialog": ctx}, status=status)


@require_http_methods(["GET", "POST"])
def job_add(request):
    store_name = request.POST.get("store") if request.method == "POST" else request.GET.get("store")
    if not has_privilege(request.user, JOB_PRIV, _store_path(store_name)):
        return forbidden(f"permission check failed: {JOB_PRIV} on {_store_path(store_name)}")
    page_store = request.GET.get("store") or request.POST.get("page_store") or ""
    default_next = f"/datastore/{page_store}/sync-jobs/" if page_store else "/sync-jobs/"
    next_url = _next_url(request, default_next)
    if request.method == "POST":
        form = SyncJobForm(request.POST)
        response = _save(request, form, next_url)
        if response is not None:
            return response
    else:
        initial = {"direction": request.GET.get("direction") if request.GET.get("direction") in ("push", "pull")
                   else "push", "store": request.GET.get("store", ""), "enabled": True, "workers": 8}
        # "Pull into a datastore" from Remote -> Content prefills the remote side
        for name in ("remote", "remote_store", "ns", "id"):
            if request.GET.get(name):
                initial[name] = request.GET[name]
        form = SyncJobForm(initial=initial)
    return _dialog_response(request, form, action="/sync-jobs/add/", title_action="Add",
                            next_url=next_url, store_name=page_store)


@require_http_methods(["GET", "POST"])
@require(JOB_PRIV, _job_acl_path)
def job_edit(request, job):
    job = get_object_or_404(SyncJob.objects.select_related("store", "remote"), job_id=job)
    next_url = _next_url(request, "/sync-jobs/")
    if request.method == "POST":
        form = SyncJobForm(request.POST, instance=job)
        response = _save(request, form, next_url)
        if response is not None:
            return response
    else:
        form = SyncJobForm(instance=job)
    push = job.direction == "push"
    return _dialog_response(request, form, action=f"/sync-jobs/{job.job_id}/edit/", title_action="Edit",
                            next_url=next_url, store_name=job.store.name,
                            plan_url=f"/sync-jobs/{job.job_id}/plan/" if push else "",
                            sim_url=f"/sync-jobs/{job.job_id}/prune-simulate/" if push else "")


@require_POST
@require(JOB_PRIV, _job_acl_path)
def job_remove(request, job):
    remove_sync_job(request.user, get_object_or_404(SyncJob.objects.select_related("store"), job_id=job))
    return _done(request, _next_url(request, "/sync-jobs/"))


@require_POST
@require(JOB_PRIV, _job_acl_path)
def job_run(request, job):
    job = get_object_or_404(SyncJob.objects.select_related("store", "remote"), job_id=job)
    reconcile = request.POST.get("reconcile") in ("1", "true", "on")
    task = job.launch(request.user.username, reconcile=reconcile)
    return _done(request, task.url)


@require_http_methods(["GET", "POST"])
@require(JOB_PRIV, _job_acl_path)
def job_run_as_of(request, job):
    """Pull as of…: the dialog (GET) and starting the pull reading the bucket as it was then (POST)."""
    job = get_object_or_404(SyncJob.objects.select_related("store", "remote"), job_id=job)
    next_url = _next_url(request, f"/datastore/{job.store.name}/sync-jobs/")
    if request.method == "POST":
        form = RunAsOfForm(request.POST, job=job)
        if form.is_valid():
            task = job.launch(request.user.username, as_of=form.cleaned_data["as_of"])
            return _done(request, task.url)
    else:
        form = RunAsOfForm(job=job)
    ctx = {"job": job, "form": form, "next": next_url}
    if request.htmx:
        return render(request, "syncjobs/run_as_of_dialog.html", ctx)
    status = 400 if form.is_bound and form.errors else 200
    return _render_list(request, job.store, {"as_of_dialog": ctx}, status=status)


@require_safe
@require("Datastore.Audit", _job_acl_path)
def job_plan_view(request, job):
    """Plan: what the next run uploads, costs and takes (a dialog, or the table for the edit dialog)."""
    job = get_object_or_404(SyncJob.objects.select_related("store", "remote"), job_id=job)
    remote_path = f"/remote/{job.remote.remote_id}"
    if not has_privilege(request.user, "Remote.Audit", remote_path):
        return forbidden(f"permission check failed: Remote.Audit on {remote_path}")
    ctx = {"job": job}
    try:
        ctx["plan_rows"] = plan_rows(job_plan(job))
    except UserError as e:
        ctx["plan_error"] = e.message
    if request.htmx and request.GET.get("fragment") == "plan":
        return render(request, "syncjobs/_plan.html", ctx)
    if request.htmx:
        return render(request, "syncjobs/plan_dialog.html", ctx)
    return _render_list(request, job.store, {"plan_dialog": ctx})


@require_safe
@require("Datastore.Audit", _job_acl_path)
def job_prune_simulate(request, job):
    """The prune simulator of a push job's own remote retention (htmx fragment): which bucket snapshots
    the keep options given (the dialog's), or else the job's, keep or remove."""
    job = get_object_or_404(SyncJob.objects.select_related("store", "remote"), job_id=job)
    remote_path = f"/remote/{job.remote.remote_id}"
    if not has_privilege(request.user, "Remote.Audit", remote_path):  # it shows what the bucket holds
        return forbidden(f"permission check failed: Remote.Audit on {remote_path}")
    given = any(name in request.GET for name in KEEP_FIELDS)
    form = KeepForm(request.GET if given else {name: getattr(job, name) for name in KEEP_FIELDS
                                               if getattr(job, name) is not None})
    ctx = {"job": job, "form": form, "rows": [], "error": None, "notes": [], "kept": 0, "removed": 0}
    if form.is_valid():
        try:
            data = prune_simulation(job, keep_options(form.keep(), job) if given else None)
        except UserError as e:
            ctx["error"] = e.message
        else:
            ctx.update(rows=[{"ref": r, "mark": r.mark, "kept": r.kept} for r in data["rows"]],
                       notes=data["notes"], kept=data["kept"], removed=data["removed"])
    status = 400 if form.errors or ctx["error"] else 200
    return render(request, "syncjobs/_prune_sim.html", ctx, status=status)


@require_safe
@require("Datastore.Audit", _job_acl_path)
def job_log(request, job):
    """Show log: the task viewer of the job's last run."""
    job = get_object_or_404(SyncJob.objects.select_related("last_task", "store"), job_id=job)
    if job.last_task is None:
        messages.info(request, f"Sync job '{job.job_id}' has not run yet: there is no log to show.")
        return redirect(_next_url(request, f"/datastore/{job.store.name}/sync-jobs/"))
    return redirect(job.last_task.url)


# -- traffic control -------------------------------------------------------------------------

def _rule_dialog(request, form, *, action: str, title_action: str):
    ctx = {"form": form, "action": action, "title_action": title_action}
    if request.htmx:
        return render(request, "syncjobs/rule_dialog.html", ctx)
    rules = TrafficControlRule.objects.prefetch_related("remotes")
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "syncjobs/traffic_control.html",
                  {"rules": rules, "dialog": ctx, "can_modify": True}, status=status)


@require_safe
@require("Sys.Audit")
def traffic_control(request):
    rules = TrafficControlRule.objects.prefetch_related("remotes")
    return render(request, "syncjobs/traffic_control.html", {
        "rules": rules, "can_modify": has_privilege(request.user, RULE_PRIV, "/")})


@require_http_methods(["GET", "POST"])
@require(RULE_PRIV)
def rule_add(request):
    if request.method == "POST":
        form = TrafficControlForm(request.POST)
        if form.is_valid():
            form.save()
            return _done(request, "/traffic-control/")
    else:
        form = TrafficControlForm()
    return _rule_dialog(request, form, action="/traffic-control/add/", title_action="Add")


@require_http_methods(["GET", "POST"])
@require(RULE_PRIV)
def rule_edit(request, rule):
    rule = get_object_or_404(TrafficControlRule, name=rule)
    if request.method == "POST":
        form = TrafficControlForm(request.POST, instance=rule)
        if form.is_valid():
            form.save()
            return _done(request, "/traffic-control/")
    else:
        form = TrafficControlForm(instance=rule)
    return _rule_dialog(request, form, action=f"/traffic-control/{rule.name}/edit/", title_action="Edit")


@require_POST
@require(RULE_PRIV)
def rule_remove(request, rule):
    get_object_or_404(TrafficControlRule, name=rule).delete()
    return _done(request, "/traffic-control/")
