"""Remote → Content (what the bucket holds), Restore archive from it, and Restore Drills.

Browsing reads the bucket's listing, markers and manifests (no chunks); its
requests are recorded on the remote like a sync run's. Restoring, drills and
Recover bucket as of <time> are tasks (`reader`, `drill`, `s3-recover`).
"""
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.encoding import iri_to_uri
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from pbsweb.access import forbidden, has_privilege, require
from pbsweb.errors import UserError
from pbsweb.worker import run
from remotes.engine.client import RequestCounters
from remotes.engine.errors import explain_error
from remotes.models import Remote
from syncjobs.drills import drill_status
from syncjobs.engine.asof import AsOfBucket
from syncjobs.engine.bucket import SyncError
from syncjobs.engine.recover import parse_as_of
from syncjobs.engine.scope import normalize_ns
from syncjobs.forms import SCHEDULE_PRESETS, DrillJobForm, RecoverForm, RemoteRestoreForm
from syncjobs.models import DrillJob
from syncjobs.remote_content import fetch_snapshot, list_snapshots, make_bucket, record_requests, store_prefixes
from syncjobs.services import remove_drill, save_drill
from syncjobs.tasks import save_restore_key

RESTORE_PRIV = "Remote.Read"     # on /remote/<id>; writing to a server path also needs Sys.Modify
RECOVER_PRIV = "Remote.Modify"   # recovery rewrites the bucket's objects
DRILL_MODIFY = "Remote.Modify"
DRILL_RUN = "Remote.Read"


def _remote_path(kw) -> str:
    return f"/remote/{kw['remote']}"


def _drill_path(kw) -> str:
    rid = DrillJob.objects.filter(job_id=kw.get("job")).values_list("remote__remote_id", flat=True).first()
    return f"/remote/{rid}" if rid else "/remote"


def _done(request, url: str):
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = iri_to_uri(url)
        return response
    return redirect(url)


# -- Remote → Content -----------------------------------------------------------------------

class _NoListing(Exception):
    """The content page shows its as-of error instead of a listing."""


@require_safe
@require("Remote.Audit", _remote_path)
def remote_content(request, remote):
    obj = get_object_or_404(Remote, remote_id=remote)
    counters = RequestCounters()
    ctx = {"r": obj, "stores": [], "store": None, "listing": None, "groups": [], "error": "",
           "drill": drill_status(obj), "ns": "", "namespaces": [], "as_of": "", "as_of_store": "", "as_of_error": "",
           "can_pull": has_privilege(request.user, "Datastore.Modify", "/"),
           "can_restore": has_privilege(request.user, RESTORE_PRIV, f"/remote/{remote}")
           and has_privilege(request.user, "Sys.Modify", "/")}
    try:
        client = obj.client(counters=counters)
        ctx["stores"] = stores = store_prefixes(make_bucket(obj, client))
        wanted = request.GET.get("remote_store")
        names = [s.prefix for s in stores]
        as_of_wanted = bool((request.GET.get("as_of") or "").strip())
        ctx["as_of_store"] = (wanted or "").strip("/")
        if wanted is not None and (wanted.strip("/") in names or as_of_wanted and wanted.strip("/")):
            # as of a time the prefix need not hold a datastore marker now (deleted since)
            ctx["store"] = wanted.strip("/")
        elif wanted:
            ctx["error"] = f"remote_store: the bucket has no datastore under prefix '{wanted}'"
        elif len(stores) == 1:
            ctx["store"] = stores[0].prefix
        if ctx["store"] is not None:
            try:
                ns = normalize_ns(request.GET.get("ns", ""))
            except ValueError as e:
                ctx["error"] = str(e)
                ns = ""
            ctx["ns"] = ns
            bucket = make_bucket(obj, client, ctx["store"])
            as_of = (request.GET.get("as_of") or "").strip()
            if as_of:  # the prefix as it was then (object versions), e.g. to restore from before an attack
                ctx["as_of"] = as_of
                try:
                    bucket = AsOfBucket(bucket, parse_as_of(as_of))
                    ctx["as_of"] = bucket.as_of.isoformat()
                    bucket.check()
                except ValueError as e:
                    ctx["as_of_error"] = f"as_of: {e}"
                    raise _NoListing() from None
                except SyncError as e:
                    ctx["as_of_error"] = f"as_of: {e}" if e.code == "AsOfEmpty" else str(e)
                    raise _NoListing() from None
            listing = list_snapshots(bucket, ns)
            ctx["listing"] = listing
            ctx["groups"] = listing.groups()
            # navigation without extra requests: Root, the chosen namespace's ancestors, it and its children
            parts = ns.split("/") if ns else []
            ancestors = {"/".join(parts[:i]) for i in range(len(parts))}
            ctx["namespaces"] = listing.namespaces()
            ctx["all_namespaces"] = sorted(ancestors | {ns} | (set(listing.namespaces()) - {""} if ns
                                                               else set(listing.namespaces())))
    except _NoListing:
        pass
    except SyncError as e:
        ctx["error"] = str(e)
    except Exception as e:  # connection refused, TLS, bad credentials: say what, no traceback
        try:
            ctx["error"] = explain_error(e, obj.config())
        except Exception:
            ctx["error"] = f"{type(e).__name__}: {e}"[:300]
    finally:
        record_requests(obj, counters)
    return render(request, "syncjobs/remote_content.html", ctx)


@require_http_methods(["GET", "POST"])
@require(RESTORE_PRIV, _remote_path)
def remote_restore(request, remote):
    """Restore archive: the dialog (GET) and starting the `reader` task (POST)."""

    if not has_privilege(request.user, "Sys.Modify", "/"):
        return forbidden("permission check failed: Sys.Modify on / (restoring writes to this server)")
    obj = get_object_or_404(Remote, remote_id=remote)
    params = request.POST if request.method == "POST" else request.GET
    prefix = (params.get("remote_store") or "").strip("/")
    as_of, as_of_error = None, ""
    if (params.get("as_of") or "").strip():
        try:
            as_of = parse_as_of(params["as_of"])
        except ValueError as e:  # the form names the field (below); the snapshot as it is now
            as_of_error = f"as_of: {e}"
    snap, error = fetch_snapshot(obj, prefix, params.get("snapshot", ""), as_of)
    if snap is None and error.startswith("as-of"):
        error = f"as_of: {error}"
    if snap is None and as_of_error:
        error = as_of_error
    if snap is None:
        ctx = {"r": obj, "error": error, "form": None, "prefix": prefix}
        if request.htmx:  # htmx swaps only 2xx answers
            return render(request, "syncjobs/remote_restore_dialog.html", ctx)
        return render(request, "syncjobs/remote_restore_page.html", ctx,
                      status=400 if request.method == "POST" else 404)
    if request.method == "POST":
        form = RemoteRestoreForm(request.POST, request.FILES, snapshot=snap)
        if form.is_valid():
            d = form.cleaned_data
            args = {"remote": obj.remote_id, "remote_store": prefix, "snapshot": snap.rel_dir,
                    "archive": d["archive"], "target": d["target"]}
            if d.get("as_of"):
                args["as_of"] = d["as_of"]
            if d.get("key_store"):
                args["key_store"] = d["key_store"]
            elif d.get("keyfile_text"):
                args["key_token"] = save_restore_key(d["keyfile_text"], d.get("passphrase") or None)
            task = run("syncjobs.tasks.restore_from_remote", "reader",
                              f"{obj.remote_id}:{prefix}:{snap.rel_dir}", request.user.username, args)
            return _done(request, task.url)
    else:
        initial = {"remote_store": prefix, "snapshot": snap.rel_dir, "as_of": as_of.isoformat() if as_of else ""}
        if params.get("archive"):
            initial["archive"] = params["archive"]
        form = RemoteRestoreForm(initial=initial, snapshot=snap)
    ctx = {"r": obj, "form": form, "snap": snap, "prefix": prefix, "error": ""}
    if request.htmx:
        return render(request, "syncjobs/remote_restore_dialog.html", ctx)
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "syncjobs/remote_restore_page.html", ctx, status=status)


# -- Restore Drills -----------------------------------------------------------------------------

def _drill_context(request, **extra):
    remotes = [r for r in Remote.objects.all()
               if has_privilege(request.user, "Remote.Audit", f"/remote/{r.remote_id}")]
    ids = [r.pk for r in remotes]
    jobs = list(DrillJob.objects.select_related("remote", "last_task").filter(remote_id__in=ids))
    status = [{"remote": r, "drill": drill_status(r)} for r in remotes]
    ctx = {"jobs": jobs, "status": status,
           "never": [s["remote"].remote_id for s in status if not (s["drill"] and s["drill"]["ever_passed"])],
           "any_running": any(j.last_task and j.last_task.running for j in jobs),
           "can_modify": has_privilege(request.user, DRILL_MODIFY, "/remote"),
           "schedule_presets": SCHEDULE_PRESETS}
    ctx.update(extra)
    return ctx


@require_safe
@require("Remote.Audit", "/remote")
def drill_list(request):
    ctx = _drill_context(request)
    if request.htmx and request.GET.get("fragment") == "rows":
        return render(request, "syncjobs/_drill_rows.html", ctx)
    return render(request, "syncjobs/drill_list.html", ctx)


def _drill_dialog(request, form, action, title_action):
    ctx = {"form": form, "action": action, "title_action": title_action, "schedule_presets": SCHEDULE_PRESETS}
    if request.htmx:
        return render(request, "syncjobs/drill_dialog.html", ctx)
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "syncjobs/drill_list.html", _drill_context(request, dialog=ctx), status=status)


def _save_drill(request, form: DrillJobForm, done: str | None = None):
    """Save through the service: done (redirect), refused (403 naming the privilege), or None
    when the dialog must show its errors again."""
    try:
        job = save_drill(request.user, form)
    except PermissionDenied as e:
        return forbidden(e)
    except UserError:
        return None
    if done:
        messages.success(request, f"Restore drill '{job.job_id}' {done}.")
    return _done(request, "/drills/")


@require_http_methods(["GET", "POST"])
@require(DRILL_MODIFY, "/remote")
def drill_add(request):
    if request.method == "POST":
        form = DrillJobForm(request.POST)
        response = _save_drill(request, form, "added")
        if response is not None:
            return response
    else:
        initial = {"enabled": True, "schedule": "weekly", "sample_size": 2,
                   "remote": request.GET.get("remote", ""), "remote_store": request.GET.get("remote_store", "")}
        form = DrillJobForm(initial=initial)
    return _drill_dialog(request, form, "/drills/add/", "Add")


@require_http_methods(["GET", "POST"])
@require(DRILL_MODIFY, _drill_path)
def drill_edit(request, job):
    obj = get_object_or_404(DrillJob.objects.select_related("remote"), job_id=job)
    if request.method == "POST":
        form = DrillJobForm(request.POST, instance=obj)
        response = _save_drill(request, form)
        if response is not None:
            return response
    else:
        form = DrillJobForm(instance=obj)
    return _drill_dialog(request, form, f"/drills/{obj.job_id}/edit/", "Edit")


@require_POST
@require(DRILL_MODIFY, _drill_path)
def drill_remove(request, job):
    remove_drill(request.user, get_object_or_404(DrillJob.objects.select_related("remote"), job_id=job))
    messages.success(request, f"Restore drill '{job}' removed.")
    return _done(request, "/drills/")


@require_POST
@require(DRILL_RUN, _drill_path)
def drill_run(request, job):
    obj = get_object_or_404(DrillJob.objects.select_related("remote"), job_id=job)
    task = obj.launch(request.user.username)
    return _done(request, task.url)


@require_safe
@require("Remote.Audit", _drill_path)
def drill_log(request, job):
    obj = get_object_or_404(DrillJob.objects.select_related("last_task"), job_id=job)
    if obj.last_task is None:
        messages.info(request, f"Restore drill '{obj.job_id}' has not run yet: there is no log to show.")
        return redirect("/drills/")
    return redirect(obj.last_task.url)


# -- Recover bucket as of <time> --------------------------------------------------------------

@require_http_methods(["GET", "POST"])
@require(RECOVER_PRIV, _remote_path)
def remote_recover(request, remote):
    """The dialog (GET) and starting the `s3-recover` task (POST), as `remote recover`."""
    obj = get_object_or_404(Remote, remote_id=remote)
    if request.method == "POST":
        form = RecoverForm(request.POST)
        if form.is_valid():
            d = form.cleaned_data
            task = run("syncjobs.tasks.recover_remote", "s3-recover", f"{obj.remote_id}:{d['remote_store']}",
                       request.user.username, {"remote": obj.remote_id, "remote_store": d["remote_store"],
                                               "as_of": d["as_of"]})
            return _done(request, task.url)
    else:
        form = RecoverForm(initial={"remote_store": (request.GET.get("remote_store") or "").strip("/")})
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "syncjobs/remote_recover_page.html", {"r": obj, "form": form}, status=status)
