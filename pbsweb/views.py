import time

from django.conf import settings
from django.contrib.auth import get_user_model, login, logout
from django.core.cache import cache
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST, require_safe

from pbsweb import dashboard as board
from pbsweb import tasklog
from pbsweb.access import require
from pbsweb.apitokens import create_token
from pbsweb.forms import AclForm, LoginForm, TokenForm, UserForm, qualified_username
from pbsweb.models import AclEntry, ApiToken, NotificationTarget, Task
from pbsweb.notify import NotificationForm, send_test
from pbsweb.security import plain_error
from pbsweb.worker import request_stop

TASKS_PER_PAGE = 50


def _login_failures(request) -> tuple[str, str]:
    """Cache keys counting failed logins: per client address, and per user ID as the form
    reads it (stripped, realm-qualified, lower-case: " Victim1" is victim1@pbs)."""
    user = qualified_username(request.POST.get("username", ""), request.POST.get("realm") or "pbs")
    return (f"login-fail:addr:{request.META.get('REMOTE_ADDR', '')}",
            f"login-fail:user:{user.lower()[:200]}")


def login_delay(user_failures: int) -> float:
    """Seconds a login for a user under attack waits: 0 below the limit, then doubling from
    half a second up to LOGIN_FAILURE_MAX_DELAY. It slows guessing from many addresses
    without locking the real user out."""
    over = user_failures - settings.LOGIN_FAILURE_LIMIT
    return 0.0 if over < 0 else min(settings.LOGIN_FAILURE_MAX_DELAY, 0.5 * 2 ** over)


def login_view(request):
    form = LoginForm(request, data=request.POST or None)
    if request.method == "POST":
        addr_key, user_key = _login_failures(request)
        if cache.get(addr_key, 0) >= settings.LOGIN_FAILURE_LIMIT:
            form = LoginForm(request)
            minutes = settings.LOGIN_FAILURE_WINDOW // 60
            return render(request, "login.html", {"form": form, "throttled": (
                f"Too many failed logins. Try again in {minutes} minutes.")}, status=429)
        time.sleep(login_delay(cache.get(user_key, 0)))
        if not form.is_valid():
            for key in (addr_key, user_key):
                cache.add(key, 0, settings.LOGIN_FAILURE_WINDOW)
                cache.incr(key)
            return render(request, "login.html", {"form": form}, status=400)
    if request.method == "POST" and form.is_valid():
        login(request, form.user)
        target = request.GET.get("next", "/")
        if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
            target = "/"
        return redirect(target)
    return render(request, "login.html", {"form": form}, status=400 if form.errors else 200)


@require_POST
def logout_view(request):
    logout(request)
    return redirect("login")


@require_safe
@require("Sys.Audit")
def dashboard(request):
    return render(request, "dashboard.html", board.page_context(request))


def _filtered_tasks(request):
    tasks = Task.objects.all()
    worker_type = request.GET.get("type", "")
    state = request.GET.get("state", "")
    if worker_type:
        tasks = tasks.filter(worker_type=worker_type)
    if state == "running":
        tasks = tasks.filter(state__in=[Task.QUEUED, Task.RUNNING])
    elif state == "errors":
        tasks = tasks.filter(state=Task.ERROR)
    elif state in (Task.OK, Task.WARNING):
        tasks = tasks.filter(state=state)
    return tasks, worker_type, state


@require_safe
@require("Sys.Audit")
def task_list(request):
    tasks, worker_type, state = _filtered_tasks(request)
    page = Paginator(tasks.only(
        "upid", "worker_type", "worker_id", "user", "starttime", "endtime", "state", "status", "progress",
    ), TASKS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "tasks/list.html", {
        "page": page, "worker_type": worker_type, "state": state, "query": query.urlencode(),
        "types": sorted(Task.objects.order_by().values_list("worker_type", flat=True).distinct()),
        "history_days": settings.TASK_HISTORY_DAYS, "history_count": f"{settings.TASK_HISTORY_COUNT:,}",
    })


@require_safe
@require("Sys.Audit")
def task_detail(request, upid):
    task = get_object_or_404(Task, upid=upid)
    data, start, end = tasklog.read_tail(task.log_path)
    return render(request, "tasks/detail.html", {
        "task": task, "log": data.decode("utf-8", "replace"), "log_start": start, "log_end": end,
    })


@require_safe
@require("Sys.Audit")
def task_log(request, upid):
    """The log past byte `start` (htmx polls this while the task runs)."""
    task = get_object_or_404(Task, upid=upid)
    try:
        start = max(0, int(request.GET.get("start", "0")))
    except ValueError:
        raise Http404("start: not a byte offset")
    data, end = tasklog.read_from(task.log_path, start)
    response = render(request, "tasks/log_chunk.html", {
        "task": task, "text": data.decode("utf-8", "replace"), "end": end,
    })
    if not task.running and not data:
        response["HX-Trigger"] = "task-finished"
    return response


@require_safe
@require("Sys.Audit")
def task_log_download(request, upid):
    task = get_object_or_404(Task, upid=upid)
    try:
        return HttpResponse(open(task.log_path, "rb"), content_type="text/plain; charset=utf-8")
    except FileNotFoundError:
        return HttpResponse(b"", content_type="text/plain")


@require_safe
@require("Sys.Audit")
def task_status(request, upid):
    task = get_object_or_404(Task, upid=upid)
    return render(request, "tasks/status.html", {"task": task})


@require_POST
@require("Sys.Modify")
def task_stop(request, upid):
    task = get_object_or_404(Task, upid=upid)
    if task.running:
        request_stop(task)
    if request.htmx:
        return render(request, "tasks/status.html", {"task": Task.objects.get(pk=task.pk)})
    return redirect("task-detail", upid=upid)


@require_safe
@require("Sys.Audit")
def access_control(request):
    users = get_user_model().objects.order_by("username").prefetch_related("acl")
    return render(request, "access/users.html", {"users": users, "form": UserForm()})


@require_POST
@require("Permissions.Modify")
def user_add(request):
    form = UserForm(request.POST)
    if not form.is_valid():
        users = get_user_model().objects.order_by("username")
        return render(request, "access/users.html", {"users": users, "form": form, "show_dialog": True}, status=400)
    data = form.cleaned_data
    user = get_user_model().objects.create_user(username=data["userid"], password=data["password"])
    AclEntry.objects.create(user=user, path=data["path"], role=data["role"])
    return redirect("access-control")


@require_POST
@require("Permissions.Modify")
def user_remove(request, username):
    user = get_object_or_404(get_user_model(), username=username)
    if user == request.user:
        return plain_error("You cannot remove your own user")
    user.delete()
    return redirect("access-control")


def _permissions_page(request, form, status=200, **extra):
    return render(request, "access/permissions.html", {
        "entries": AclEntry.objects.select_related("user", "token__user"), "form": form, **extra}, status=status)


def _tokens_page(request, form, status=200, **extra):
    return render(request, "access/tokens.html", {
        "tokens": ApiToken.objects.select_related("user").prefetch_related("acl"), "form": form, **extra}, status=status)


@require_safe
@require("Sys.Audit")
def permissions(request):
    return _permissions_page(request, AclForm())


@require_POST
@require("Permissions.Modify")
def permission_add(request):
    form = AclForm(request.POST)
    if not form.is_valid():
        return _permissions_page(request, form, status=400, show_dialog=True)
    AclEntry.objects.update_or_create(path=form.cleaned_data["path"], **form.cleaned_data["user"],
                                      role=form.cleaned_data["role"],
                                      defaults={"propagate": form.cleaned_data["propagate"]})
    return redirect("permissions")


@require_POST
@require("Permissions.Modify")
def permission_remove(request, id):
    AclEntry.objects.filter(pk=id).delete()
    return redirect("permissions")


@require_safe
@require("Sys.Audit")
def api_tokens(request):
    return _tokens_page(request, TokenForm())


@require_POST
@require("Permissions.Modify")
def api_token_add(request):
    form = TokenForm(request.POST)
    if not form.is_valid():
        return _tokens_page(request, form, status=400, show_dialog=True)
    data = form.cleaned_data
    token, secret = create_token(data["user"], data["name"], data["comment"], data["role"], data["path"] or "/")
    # The secret is shown this once, as PBS does; only its hash is stored.
    return _tokens_page(request, TokenForm(), new_token=token, new_secret=secret)


@require_POST
@require("Permissions.Modify")
def api_token_remove(request, id):
    ApiToken.objects.filter(pk=id).delete()
    return redirect("api-tokens")


@require_safe
@require("Sys.Audit")
def dashboard_running(request):
    """The dashboard's Running Tasks card (htmx polls it every few seconds)."""
    return render(request, "dashboard/running.html", {"running": board.running_tasks()})


def _notification_page(request, form=None, status=200, tested=None):
    """The grid; `form` (with errors) is the Add or Edit dialog to show open again."""
    editing = form is not None and form.instance.pk
    return render(request, "notifications/list.html", {
        "targets": NotificationTarget.objects.all(), "tested": tested,
        "add_form": form if form is not None and not editing else NotificationForm(),
        "add_failed": form is not None and not editing,
        "edit_form": form if editing else None, "edit_name": form.instance.name if editing else "",
    }, status=status)


@require_safe
@require("Sys.Audit")
def notifications(request):
    return _notification_page(request)


@require_POST
@require("Sys.Modify")
def notification_add(request):
    form = NotificationForm(request.POST)
    if not form.is_valid():
        return _notification_page(request, form, status=400)
    form.save()
    return redirect("notifications")


@require_safe
@require("Sys.Audit")
def notification_detail(request, name):
    """The Edit dialog of a notification target (htmx puts it in #dialog-slot)."""
    target = get_object_or_404(NotificationTarget, name=name)
    return render(request, "notifications/dialog.html", {"form": NotificationForm(instance=target),
                                                         "edit_name": target.name})


@require_POST
@require("Sys.Modify")
def notification_edit(request, name):
    target = get_object_or_404(NotificationTarget, name=name)
    form = NotificationForm(request.POST, instance=target)
    if not form.is_valid():
        return _notification_page(request, form, status=400)
    form.save()
    return redirect("notifications")


@require_POST
@require("Sys.Modify")
def notification_test(request, name):
    target = get_object_or_404(NotificationTarget, name=name)
    error = send_test(target)
    result = {"name": target.name, "ok": not error, "error": error}
    if request.htmx:
        return render(request, "notifications/test_result.html", {"tested": result})
    return _notification_page(request, tested=result)


@require_POST
@require("Sys.Modify")
def notification_remove(request, name):
    NotificationTarget.objects.filter(name=name).delete()
    return redirect("notifications")
