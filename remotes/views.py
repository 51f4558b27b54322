"""Configuration → Remotes: the grid, the Add/Edit dialog, Test Connection, the detail page."""
import json

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from pbsweb.access import has_privilege, require
from pbsweb.errors import Conflict, UserError
from remotes import usage as usage_view
from remotes.engine import providers
from remotes.forms import ConnectionTestForm, RemoteForm
from remotes.models import Remote
from remotes.services import remove_remote, save_remote
from remotes.tasks import run_connection_test

_MODIFY_ANY = require("Remote.Modify", "/remote")


def _remote_path(kw):
    return f"/remote/{kw['remote']}"


def presets() -> dict:
    return {p["key"]: p for p in providers.presets_for_ui()}


def _grid_context(request, **extra):
    remotes = [r for r in Remote.objects.all() if has_privilege(request.user, "Remote.Audit", f"/remote/{r.remote_id}")]
    context = {"remotes": remotes, "presets": presets(),
               "can_modify": has_privilege(request.user, "Remote.Modify", "/remote")}
    context.update(extra)
    return context


@require_safe
def remote_list(request):  # any user: the grid is filtered to the remotes they may audit (as PBS)
    return render(request, "remotes/list.html", _grid_context(request))


def _dialog(request, form, remote=None, status=200):
    context = {"form": form, "remote": remote, "presets": presets(),
               "action": f"/remotes/{remote.remote_id}/edit/" if remote else "/remotes/add/",
               "test_action": f"/remotes/{remote.remote_id}/edit/test/" if remote else "/remotes/add/test/"}
    if request.htmx:
        # htmx swaps only 2xx answers: the dialog with its errors comes back as 200.
        return render(request, "remotes/dialog.html", context)
    return render(request, "remotes/list.html", _grid_context(request, show_dialog=True, **context), status=status)


@require_http_methods(["GET", "POST"])
@_MODIFY_ANY
def remote_add(request):
    if request.method == "GET":
        return _dialog(request, RemoteForm())
    form = RemoteForm(request.POST)
    remote = _save(form)
    if remote is None:
        return _dialog(request, form, status=400)
    messages.success(request, f"Remote '{remote.remote_id}' added.")
    return _saved(request)


@require_http_methods(["GET", "POST"])
@require("Remote.Modify", _remote_path)
def remote_edit(request, remote):
    obj = get_object_or_404(Remote, remote_id=remote)
    if request.method == "GET":
        return _dialog(request, RemoteForm(instance=obj), obj)
    form = RemoteForm(request.POST, instance=obj)
    if _save(form, obj) is None:
        return _dialog(request, form, obj, status=400)
    messages.success(request, f"Remote '{obj.remote_id}' updated.")
    return _saved(request)


def _save(form: RemoteForm, remote: Remote | None = None) -> Remote | None:
    """The remote saved from the dialog's values, or None with the errors put on the form."""
    if not form.is_valid():
        return None
    try:
        return save_remote(form.values(), remote)
    except UserError as e:
        for name, message in (getattr(e, "errors", None) or {e.field: e.message}).items():
            form.add_error(name if name in form.fields else None, message)
        return None


def _saved(request):
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = "/remotes/"
        return response
    return redirect("remote-list")


def _dialog_test(request, remote=None):
    form = ConnectionTestForm(request.POST, instance=remote)
    if not form.is_valid():
        return render(request, "remotes/test_result.html", {"form_errors": [
            f"{form[name].label}: {error}" for name, errors in form.errors.items() if name != "__all__"
            for error in errors]})
    data = form.cleaned_data
    config = {"id": data["remote_id"], "endpoint": data["endpoint"], "bucket": data["bucket"],
              "region": data["region"], "access_key": data["access_key"], "provider": data["provider"],
              "path_style": data["path_style"], "skip_if_none_match": data["skip_if_none_match"],
              "delete_via_delete_object": data["delete_via_delete_object"],
              "no_checksum_headers": data["no_checksum_headers"],
              "tls_fingerprint": data["tls_fingerprint"] or None, "min_storage_days": data["min_storage_days"]}
    task, result = run_connection_test(
        request.user.username, config=config, secret_key=data.get("secret_key") or "",
        ca_bundle=data.get("ca_bundle") or "", write_probe=data["write_probe"],
        probe_features=data["probe_features"])
    return render(request, "remotes/test_result.html", {"task": task, "result": result,
                                                        "proposed": _proposed(result)})


def _proposed(result):
    if result is None or not result.proposed:
        return None
    labels = {name: RemoteForm.base_fields[name].label for name in RemoteForm.base_fields}
    return {"items": [(labels.get(k, k), v) for k, v in sorted(result.proposed.items())],
            "json": json.dumps(result.proposed)}


@require_POST
@_MODIFY_ANY
def remote_add_test(request):
    return _dialog_test(request)


@require_POST
@require("Remote.Modify", _remote_path)
def remote_edit_test(request, remote):
    return _dialog_test(request, get_object_or_404(Remote, remote_id=remote))


@require_POST
@require("Remote.Modify", _remote_path)
def remote_test(request, remote):
    """Test the saved remote (grid and detail page); the result is kept as its last test."""
    obj = get_object_or_404(Remote, remote_id=remote)
    task, result = run_connection_test(request.user.username, remote=obj, record=True,
                                       write_probe=request.POST.get("write_probe") == "on",
                                       probe_features=request.POST.get("probe_features") == "on")
    obj.refresh_from_db()
    if result is None and task.state == "error":
        # the test could not even start (e.g. the secret cannot be decrypted): record why
        Remote.objects.filter(pk=obj.pk).update(last_test_ok=False, last_test_message=task.status[:1000],
                                                last_test_time=task.endtime, last_test_upid=task.upid)
        obj.refresh_from_db()
    if request.htmx:
        return render(request, "remotes/row.html", {"r": obj, "can_modify": True})
    if obj.last_test_ok:
        messages.success(request, f"Remote '{obj.remote_id}': {obj.last_test_message}")
    else:
        messages.error(request, f"Remote '{obj.remote_id}': {obj.last_test_message}")
    return redirect(request.POST.get("next") if request.POST.get("next") == f"/remotes/{obj.remote_id}/"
                    else "remote-list")


@require_POST
@require("Remote.Modify", _remote_path)
def remote_remove(request, remote):
    obj = get_object_or_404(Remote, remote_id=remote)
    try:
        remove_remote(obj)
    except Conflict as e:
        messages.error(request, e.message)
    else:
        messages.success(request, f"Remote '{remote}' removed.")
    return redirect("remote-list")


@require_safe
@require("Remote.Audit", _remote_path)
def remote_detail(request, remote):
    obj = get_object_or_404(Remote, remote_id=remote)
    context = {"r": obj, "can_modify": has_privilege(request.user, "Remote.Modify", f"/remote/{remote}")}
    context.update(usage_view.detail_context(obj))
    return render(request, "remotes/detail.html", context)
