"""JSON API paths of this app under /api2/json/ (PBS paths and field names)."""
import json

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

from datastores import status as ds_status
from datastores.engine.datastore import validate_ns
from datastores.engine.errors import DatastoreError
from datastores.models import Datastore, validate_schedule
from datastores.services import FieldError, create_datastore, remove_datastore, keep_options_from, prune_plan, snapshot_info
from pbsweb.access import has_privilege, require
from datastores.services import start_store_task as start_task

KEEPS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def _path(kw):
    return f"/datastore/{kw['store']}"


def _params(request) -> dict:
    if request.content_type == "application/json":
        try:
            doc = json.loads(request.body or b"{}")
            return doc if isinstance(doc, dict) else {}
        except ValueError:
            return {}
    data = request.POST if request.method == "POST" else request.GET
    return {k: data.get(k) for k in data}


def _bool(value, field):
    if value in (None, ""):
        return None
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).lower() in ("0", "false", "no", "off"):
        return False
    raise FieldError(field, f"{value!r} is not a boolean")


def _error(field, message, status=400):
    return JsonResponse({"errors": {field: message}, "data": None}, status=status)


def _store(name):
    cfg = Datastore.objects.filter(name=name).first()
    if cfg is None:
        return None, None, _error("store", f"no datastore '{name}'", 404)
    try:
        return cfg, cfg.engine(), None
    except DatastoreError as e:
        return cfg, None, _error("store", str(e))


def _config_json(cfg) -> dict:
    return {"name": cfg.name, "path": cfg.path, "comment": cfg.comment or None, "gc-schedule": cfg.schedule or None,
            "verify-new": cfg.verify_new, "key-fingerprint": cfg.key_fingerprint or None}


@require_safe
def datastore_status_list(request):
    """Any user; filtered to the stores they may audit or back up to (as PBS)."""
    items = []
    for cfg in Datastore.objects.all():
        if (has_privilege(request.user, "Datastore.Audit", f"/datastore/{cfg.name}")
                or has_privilege(request.user, "Datastore.Backup", f"/datastore/{cfg.name}")):
            u = ds_status.usage(cfg.path)
            items.append({"store": cfg.name, "comment": cfg.comment or None, "total": u["total"],
                          "used": u["used"], "avail": u["avail"]})
    return JsonResponse({"data": items})


@csrf_exempt
def snapshots(request, store):
    if request.method == "DELETE":
        return _snapshot_forget(request, store=store)
    return _snapshot_list(request, store=store)


@require("Datastore.Prune", _path)
def _snapshot_forget(request, store):
    """DELETE ?backup-type=&backup-id=&backup-time=[&ns=]: forget one snapshot, as PBS."""
    from datastores.engine.datastore import format_time
    cfg, eng, err = _store(store)
    if err:
        return err
    q = request.GET
    try:
        name = f"{q['backup-type']}/{q['backup-id']}/{format_time(int(q['backup-time']))}"
        ref = eng.find_snapshot(name, validate_ns(q.get("ns", ""), "ns"))
        eng.remove_snapshot(ref)
    except (KeyError, ValueError):
        return _error("backup-time", "backup-type, backup-id and backup-time (epoch) are required")
    except DatastoreError as e:
        return _error("snapshot", str(e))
    return JsonResponse({"data": None})


@require_safe
@require("Datastore.Audit", _path)
def _snapshot_list(request, store):
    cfg, eng, err = _store(store)
    if err:
        return err
    ns = request.GET.get("ns", "")
    try:
        validate_ns(ns, "ns")
        refs = eng.list_snapshots(ns, recursive=request.GET.get("recursive", "1") not in ("0", "false"))
    except DatastoreError as e:
        return _error("ns", str(e))
    items = []
    for ref in refs:
        t, i = request.GET.get("backup-type"), request.GET.get("backup-id")
        if (t and ref.backup_type != t) or (i and ref.backup_id != i):
            continue
        info = snapshot_info(eng, ref)
        entry = {"backup-type": ref.backup_type, "backup-id": ref.backup_id, "backup-time": ref.time,
                 "files": [{"filename": f["filename"], "size": f["size"], "crypt-mode": f.get("crypt-mode")}
                           for f in info.get("file_entries", [])],
                 "size": info["size"], "protected": ref.protected, "comment": info["comment"] or None,
                 "verification": info["verification"], "fingerprint": info["fingerprint"],
                 "owner": eng.get_owner(ref.ns, ref.backup_type, ref.backup_id)}
        if ref.ns:
            entry["ns"] = ref.ns
        if not ref.finished:
            entry["unfinished"] = True
        items.append(entry)
    return JsonResponse({"data": items})


@csrf_exempt
def gc(request, store):
    if request.method == "POST":
        return _gc_start(request, store=store)
    return _gc_status(request, store=store)


@require_safe
@require("Datastore.Audit", _path)
def _gc_status(request, store):
    cfg, eng, err = _store(store)
    if err:
        return err
    return JsonResponse({"data": ds_status.gc_status(cfg)})


@require_POST
@require("Datastore.Modify", _path)
def _gc_start(request, store):
    cfg, eng, err = _store(store)
    if err:
        return err
    task = cfg.launch(request.user.username)
    return JsonResponse({"data": task.upid})


@require_safe
@require("Datastore.Audit", _path)
def status(request, store):
    cfg, eng, err = _store(store)
    if err:
        return err
    u = ds_status.usage(cfg.path)
    c = ds_status.counts(eng)
    gcs = ds_status.gc_status(cfg)
    return JsonResponse({"data": {"total": u["total"], "used": u["used"], "avail": u["avail"],
                                  "counts": c.get("by_type"), "snapshots": c["snapshots"], "groups": c["groups"],
                                  "gc-status": gcs}})


@require_safe
@require("Datastore.Audit", _path)
def groups(request, store):
    cfg, eng, err = _store(store)
    if err:
        return err
    try:
        ns = validate_ns(request.GET.get("ns", ""), "ns")
        refs = eng.list_snapshots(ns, recursive=False)
    except DatastoreError as e:
        return _error("ns", str(e))
    out = {}
    for r in refs:
        g = out.setdefault((r.backup_type, r.backup_id), {"backup-type": r.backup_type, "backup-id": r.backup_id,
                                                          "backup-count": 0, "last-backup": 0, "files": [],
                                                          "owner": eng.get_owner(ns, r.backup_type, r.backup_id)})
        g["backup-count"] += 1
        if r.time >= g["last-backup"]:
            g["last-backup"] = r.time
    return JsonResponse({"data": list(out.values())})


@require_safe
@require("Datastore.Audit", _path)
def namespaces(request, store):
    cfg, eng, err = _store(store)
    if err:
        return err
    return JsonResponse({"data": [{"ns": ns} for ns in eng.list_namespaces()]})


@csrf_exempt
@require_POST
@require("Datastore.Verify", _path)
def verify(request, store):
    cfg, eng, err = _store(store)
    if err:
        return err
    p = _params(request)
    try:
        ignore = _bool(p.get("ignore-verified"), "ignore-verified")
        outdated = p.get("outdated-after")
        if outdated not in (None, ""):
            if not str(outdated).isdigit():
                raise FieldError("outdated-after", f"{outdated!r} is not a number of days")
            outdated = int(outdated)
        else:
            outdated = None
        try:
            ns = validate_ns(p.get("ns") or "", "ns")
        except DatastoreError as e:  # named "ns", not "snapshot"
            raise FieldError("ns", str(e).removeprefix("ns: ")) from None
        snapshot = None
        if p.get("backup-type") or p.get("backup-id") or p.get("backup-time"):
            from datastores.engine.datastore import format_time
            try:
                snapshot = f"{p['backup-type']}/{p['backup-id']}/{format_time(int(p['backup-time']))}"
                eng.find_snapshot(snapshot, ns)
            except (KeyError, ValueError, TypeError):
                raise FieldError("backup-time", "backup-type, backup-id and backup-time are needed together")
    except FieldError as e:
        return _error(e.field, e.message)
    except DatastoreError as e:
        return _error("snapshot", str(e))
    task = start_task("datastores.tasks.verify", "verify", f"{store}:{snapshot}" if snapshot else store,
                      request.user.username, {"store": store, "snapshot": snapshot, "ns": ns,
                                              "ignore_verified": True if ignore is None else ignore,
                                              "outdated_after": outdated})
    return JsonResponse({"data": task.upid})


def _keep_from_params(p) -> dict:
    keep = {}
    for k in KEEPS:
        v = p.get(f"keep-{k}")
        if v in (None, ""):
            continue
        if not str(v).isdigit():
            raise FieldError(f"keep-{k}", f"{v!r} is not a non-negative integer")
        keep[f"keep_{k}"] = int(v)
    return keep


@csrf_exempt
@require_POST
@require("Datastore.Prune", _path)
def prune(request, store):
    """Prune (one group with backup-type/backup-id, or every group under ns). dry-run returns the
    plan; otherwise the snapshots marked remove are removed and the plan is returned, as PBS."""
    cfg, eng, err = _store(store)
    if err:
        return err
    p = _params(request)
    try:
        keep = _keep_from_params(p)
        dry_run = bool(_bool(p.get("dry-run"), "dry-run"))
        ns = validate_ns(p.get("ns") or "", "ns")
        plan = prune_plan(eng, keep_options_from(keep), ns, recursive=not p.get("backup-type"))
    except FieldError as e:
        return _error(e.field, e.message)
    except DatastoreError as e:
        return _error("ns", str(e))
    t, i = p.get("backup-type"), p.get("backup-id")
    plan = [(r, m) for r, m in plan if (not t or r.backup_type == t) and (not i or r.backup_id == i)]
    out = []
    for ref, mark in plan:
        out.append({"backup-type": ref.backup_type, "backup-id": ref.backup_id, "backup-time": ref.time,
                    "keep": mark != "remove", "protected": mark == "protected", **({"ns": ref.ns} if ref.ns else {})})
    if not dry_run:
        for ref, _mark in sorted((x for x in plan if x[1] == "remove"), key=lambda x: x[0].time):
            try:
                eng.remove_snapshot(ref)
            except DatastoreError as e:
                return _error("snapshot", str(e), 409)
    return JsonResponse({"data": out})


@csrf_exempt
@require_POST
@require("Datastore.Prune", _path)
def prune_datastore(request, store):
    cfg, eng, err = _store(store)
    if err:
        return err
    p = _params(request)
    try:
        keep = _keep_from_params(p)
        dry_run = bool(_bool(p.get("dry-run"), "dry-run"))
        ns = validate_ns(p.get("ns") or "", "ns")
    except FieldError as e:
        return _error(e.field, e.message)
    except DatastoreError as e:
        return _error("ns", str(e))
    task = start_task("datastores.tasks.prune", "prune", store, request.user.username,
                      {"store": store, "ns": ns, "keep": keep, "dry_run": dry_run})
    return JsonResponse({"data": task.upid})


@csrf_exempt
def config_datastore(request):
    if request.method == "POST":
        return _config_create(request)
    return _config_list(request)


@require_safe
def _config_list(request):
    return JsonResponse({"data": [_config_json(c) for c in Datastore.objects.all()
                                  if has_privilege(request.user, "Datastore.Audit", f"/datastore/{c.name}")]})


@require_POST
@require("Datastore.Allocate", "/datastore")
def _config_create(request):
    p = _params(request)
    schedule = p.get("gc-schedule")
    schedule = "daily" if schedule is None else str(schedule)
    try:
        from django.core.exceptions import ValidationError
        try:
            validate_schedule(schedule)
        except ValidationError as e:
            raise FieldError("gc-schedule", e.messages[0]) from None
        verify_new = bool(_bool(p.get("verify-new"), "verify-new"))
        cfg = create_datastore(str(p.get("name") or ""), str(p.get("path") or ""), str(p.get("comment") or ""),
                               schedule, verify_new)
    except FieldError as e:
        return _error(e.field, e.message)
    return JsonResponse({"data": _config_json(cfg)})


@csrf_exempt
def config_datastore_item(request, name):
    if request.method == "DELETE":
        return _config_remove(request, name=name)
    return _config_get(request, name=name)


@require_safe
@require("Datastore.Audit", lambda kw: f"/datastore/{kw['name']}")
def _config_get(request, name):
    cfg = Datastore.objects.filter(name=name).first()
    if cfg is None:
        return _error("name", f"no datastore '{name}'", 404)
    return JsonResponse({"data": _config_json(cfg)})


@require("Datastore.Allocate", lambda kw: f"/datastore/{kw['name']}")
def _config_remove(request, name):
    cfg = Datastore.objects.filter(name=name).first()
    if cfg is None:
        return _error("name", f"no datastore '{name}'", 404)
    try:
        remove_datastore(cfg)
    except FieldError as e:
        return _error(e.field, e.message, 409)
    return JsonResponse({"data": None})


urlpatterns = [
    path("admin/datastore", datastore_status_list),
    path("admin/datastore/<str:store>/snapshots", snapshots),
    path("admin/datastore/<str:store>/gc", gc),
    path("admin/datastore/<str:store>/status", status),
    path("admin/datastore/<str:store>/groups", groups),
    path("admin/datastore/<str:store>/namespace", namespaces),
    path("admin/datastore/<str:store>/verify", verify),
    path("admin/datastore/<str:store>/prune", prune),
    path("admin/datastore/<str:store>/prune-datastore", prune_datastore),
    path("config/datastore", config_datastore),
    path("config/datastore/<str:name>", config_datastore_item),
]
