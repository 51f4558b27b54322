"""JSON API under /api2/json/, mirroring PBS paths for scripts (docs/DESIGN.md §6).

Responses are `{"data": ...}` as PBS. Apps add their paths in their own api
modules; this one holds the task paths.
"""
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_safe

from pbsweb import tasklog
from pbsweb.access import require
from pbsweb.models import Task
from pbsweb.worker import request_stop


def _int_param(request, name: str, default: int) -> int:
    """A non-negative integer query parameter; ValueError names the parameter."""
    raw = (request.GET.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise ValueError(name)
    return int(raw)


def _bad_param(name: str) -> JsonResponse:
    return JsonResponse({"errors": {name: "expected a non-negative integer"}}, status=400)


def task_json(task: Task) -> dict:
    return {
        "upid": task.upid, "node": task.node, "worker_type": task.worker_type, "worker_id": task.worker_id,
        "user": task.user, "starttime": int(task.starttime.timestamp()),
        "endtime": int(task.endtime.timestamp()) if task.endtime else None,
        "status": task.status if not task.running else None, "state": task.state,
        "progress": task.progress,
    }


@require_safe
@require("Sys.Audit")
def tasks(request, node="localhost"):
    qs = Task.objects.all()
    if request.GET.get("typefilter"):
        qs = qs.filter(worker_type=request.GET["typefilter"])
    if request.GET.get("running") in ("1", "true"):
        qs = qs.filter(state__in=[Task.QUEUED, Task.RUNNING])
    if request.GET.get("errors") in ("1", "true"):
        qs = qs.filter(state=Task.ERROR)
    try:
        start = _int_param(request, "start", 0)
        limit = min(_int_param(request, "limit", 50) or 50, 1000)
    except ValueError as e:
        return _bad_param(str(e))
    return JsonResponse({"data": [task_json(t) for t in qs[start:start + limit]], "total": qs.count()})


@csrf_exempt
@require_http_methods(["GET", "DELETE"])
def task(request, upid, node="localhost"):
    if request.method == "DELETE":
        return _task_stop(request, upid=upid)
    return _task_status(request, upid=upid)


@require_safe
@require("Sys.Audit")
def _task_status(request, upid, node="localhost"):
    return JsonResponse({"data": task_json(get_object_or_404(Task, upid=upid))})


@require("Sys.Modify")
def _task_stop(request, upid, node="localhost"):
    request_stop(get_object_or_404(Task, upid=upid))
    return JsonResponse({"data": None})


@require_safe
@require("Sys.Audit")
def task_log(request, upid, node="localhost"):
    """Lines as PBS: [{"n": line number, "t": text}], from line `start`, at most `limit`."""
    t = get_object_or_404(Task, upid=upid)
    try:
        start = _int_param(request, "start", 0)
        limit = min(_int_param(request, "limit", 500) or 500, 50000)
    except ValueError as e:
        return _bad_param(str(e))
    lines, total = tasklog.read_lines(t.log_path, start, limit)
    chunk = [{"n": start + i + 1, "t": line} for i, line in enumerate(lines)]
    return JsonResponse({"data": chunk, "total": total, "active": t.running})


urlpatterns = [
    path("nodes/<str:node>/tasks", tasks),
    path("nodes/<str:node>/tasks/<str:upid>", task),
    path("nodes/<str:node>/tasks/<str:upid>/status", _task_status),
    path("nodes/<str:node>/tasks/<str:upid>/log", task_log),
    path("", include("datastores.api")),
    path("", include("remotes.api")),
    path("", include("syncjobs.api")),
]
