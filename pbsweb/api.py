"""The JSON API under /api2/json/: one layer for every app's paths, mirroring PBS paths and
field names for scripts (docs/DESIGN.md §6).

Every view is built with `endpoint(GET=handler, POST=handler, ...)`, which
- answers only the methods it has a handler for (405 otherwise);
- refuses an unsafe request that carries the session cookie but no CSRF token header
  (`CSRFPreventionToken`, as PBS, or Django's `X-CSRFToken`): Django's CsrfViewMiddleware
  checks the token's value; a request authenticated by an API token needs none (no browser
  sends one on its own, see pbsweb/access.py);
- parses the parameters once into `request.params`: the query string, overlaid for POST, PUT
  and DELETE by the body (a JSON object, or form-encoded as PBS clients send it);
- maps the errors in one place, always as `{"errors": {field: message}}`:
      UserError(field, message)               400 (NotFound 404, Conflict 409: pbsweb/errors.py)
      Http404, Model.DoesNotExist             404
      PermissionDenied(reason)                403 {"errors": {"permission": reason}}
The parsers below raise UserError naming the field. Answers are `{"data": ...}` as PBS.
This module knows no app: apps add their paths in their own api modules.
"""
import json

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.http import Http404, JsonResponse, QueryDict
from django.urls import include, path
from django.views.csrf import csrf_failure as page_csrf_failure

from pbsweb import tasklog
from pbsweb.access import require
from pbsweb.errors import NotFound, UserError
from pbsweb.models import Task
from pbsweb.worker import request_stop

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
API_PREFIX = "/api2/"
CSRF_HEADER = "HTTP_X_CSRFTOKEN"            # Django's header, settings.CSRF_HEADER_NAME
PBS_CSRF_HEADER = "HTTP_CSRFPREVENTIONTOKEN"  # PBS's name for the same token


def error_response(errors: dict, status: int) -> JsonResponse:
    return JsonResponse({"errors": errors, "data": None}, status=status)


def ok(data=None, **extra) -> JsonResponse:
    return JsonResponse({"data": data, **extra})


# -- parameters ---------------------------------------------------------------------------------

def _form_dict(qd: QueryDict) -> dict:
    """Form values as JSON would carry them: one value as a string, a repeated key as a list."""
    return {k: (v[0] if len(v) == 1 else v) for k, v in qd.lists()}


def parse_body(request) -> dict:
    """The body of a POST/PUT/DELETE as a dict; UserError('body', ...) for anything else."""
    if request.content_type == "application/json":
        try:
            doc = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError) as e:
            raise UserError("body", f"not valid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise UserError("body", f"expected a JSON object, not {type(doc).__name__}")
        return doc
    if request.method == "POST":
        return _form_dict(request.POST)
    return _form_dict(QueryDict(request.body))


def parse_bool(value, field: str, default: bool | None = None) -> bool | None:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise UserError(field, f"expected true or false, not {value!r}")


def parse_uint(value, field: str, default: int | None = None, maximum: int | None = None) -> int | None:
    """A non-negative integer (a JSON number or its digits as text)."""
    if value is None or value == "":
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value) <= 20:
        number = int(value.strip())
    else:
        raise UserError(field, f"expected a non-negative integer, not {value!r}")
    if number < 0:
        raise UserError(field, f"expected a non-negative integer, not {value!r}")
    if maximum is not None and number > maximum:
        raise UserError(field, f"must be at most {maximum}")
    return number


def parse_text(value, field: str, default: str = "") -> str:
    """One text value; a list or an object where one value belongs is refused."""
    if value is None:
        return default
    if isinstance(value, (list, dict)):
        raise UserError(field, "expected one value, not a list or an object")
    return value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def reject_unknown(params: dict, known) -> None:
    for key in params:
        if key not in known:
            raise UserError(key, "unknown parameter")


# -- the view wrapper ------------------------------------------------------------------------------

def _csrf_checked(request) -> bool:
    """A cookie request's unsafe method needs the token in a header (Django has checked its value);
    API-token requests (and Django's test client) have CSRF checks turned off."""
    return (request.method in SAFE_METHODS or getattr(request, "_dont_enforce_csrf_checks", False)
            or bool(request.META.get(CSRF_HEADER)))


def endpoint(**handlers):
    """A view answering each method with its handler, e.g. endpoint(GET=show, PUT=update)."""
    handlers = {method.upper(): handler for method, handler in handlers.items()}
    if "GET" in handlers:
        handlers.setdefault("HEAD", handlers["GET"])

    def view(request, *args, **kwargs):
        handler = handlers.get(request.method)
        if handler is None:
            response = error_response({"method": f"{request.method} is not allowed here"}, 405)
            response["Allow"] = ", ".join(sorted(handlers))
            return response
        if not _csrf_checked(request):
            return error_response({"csrf": "a request with the session cookie needs the CSRF token in the "
                                           "CSRFPreventionToken (or X-CSRFToken) header"}, 403)
        try:
            request.params = _form_dict(request.GET)
            if request.method not in SAFE_METHODS:
                request.params.update(parse_body(request))
            return handler(request, *args, **kwargs)
        except UserError as e:
            return error_response(getattr(e, "errors", None) or {e.field: e.message}, getattr(e, "status", 400))
        except PermissionDenied as e:
            return error_response({"permission": str(e) or "permission check failed"}, 403)
        except (Http404, ObjectDoesNotExist) as e:
            return error_response({"path": str(e) or f"{request.path} does not exist"}, 404)

    view.api_methods = frozenset(handlers)   # tests list the mutating routes from the URL resolver
    return view


class CsrfPreventionTokenMiddleware:
    """PBS clients send the CSRF token as `CSRFPreventionToken`: hand it to Django's check under
    Django's header name (before CsrfViewMiddleware looks at it)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(API_PREFIX) and PBS_CSRF_HEADER in request.META:
            request.META.setdefault(CSRF_HEADER, request.META[PBS_CSRF_HEADER])
        return self.get_response(request)


def csrf_failure(request, reason=""):
    """settings.CSRF_FAILURE_VIEW: the API answers JSON, pages Django's page."""
    if request.path.startswith(API_PREFIX):
        return error_response({"csrf": f"CSRF check failed: {reason}"}, 403)
    return page_csrf_failure(request, reason)


# -- tasks ---------------------------------------------------------------------------------------

def task_json(task: Task) -> dict:
    return {
        "upid": task.upid, "node": task.node, "worker_type": task.worker_type, "worker_id": task.worker_id,
        "user": task.user, "starttime": int(task.starttime.timestamp()),
        "endtime": int(task.endtime.timestamp()) if task.endtime else None,
        "status": task.status if not task.running else None, "state": task.state,
        "progress": task.progress,
    }


def _task(upid) -> Task:
    task = Task.objects.filter(upid=upid).first()
    if task is None:
        raise NotFound("upid", f"no task '{upid}'")
    return task


@require("Sys.Audit")
def _task_list(request, node="localhost"):
    p = request.params
    qs = Task.objects.all()
    if p.get("typefilter"):
        qs = qs.filter(worker_type=parse_text(p["typefilter"], "typefilter"))
    if parse_bool(p.get("running"), "running"):
        qs = qs.filter(state__in=[Task.QUEUED, Task.RUNNING])
    if parse_bool(p.get("errors"), "errors"):
        qs = qs.filter(state=Task.ERROR)
    start = parse_uint(p.get("start"), "start", 0, maximum=10 ** 12)
    limit = min(parse_uint(p.get("limit"), "limit", 50, maximum=10 ** 12) or 50, 1000)
    return ok([task_json(t) for t in qs[start:start + limit]], total=qs.count())


@require("Sys.Audit")
def _task_status(request, upid, node="localhost"):
    return ok(task_json(_task(upid)))


@require("Sys.Modify")
def _task_stop(request, upid, node="localhost"):
    request_stop(_task(upid))
    return ok()


@require("Sys.Audit")
def _task_log(request, upid, node="localhost"):
    """Lines as PBS: [{"n": line number, "t": text}], from line `start`, at most `limit`."""
    t = _task(upid)
    start = parse_uint(request.params.get("start"), "start", 0, maximum=10 ** 12)
    limit = min(parse_uint(request.params.get("limit"), "limit", 500, maximum=10 ** 12) or 500, 50000)
    lines, total = tasklog.read_lines(t.log_path, start, limit)
    chunk = [{"n": start + i + 1, "t": line} for i, line in enumerate(lines)]
    return ok(chunk, total=total, active=t.running)


urlpatterns = [
    path("nodes/<str:node>/tasks", endpoint(GET=_task_list)),
    path("nodes/<str:node>/tasks/<str:upid>", endpoint(GET=_task_status, DELETE=_task_stop)),
    path("nodes/<str:node>/tasks/<str:upid>/status", endpoint(GET=_task_status)),
    path("nodes/<str:node>/tasks/<str:upid>/log", endpoint(GET=_task_log)),
    path("", include("datastores.api")),
    path("", include("remotes.api")),
    path("", include("syncjobs.api")),
]
