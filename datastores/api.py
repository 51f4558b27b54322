"""JSON API paths of this app under /api2/json/ (PBS paths and field names).

Parameters, errors and CSRF are handled by pbsweb.api.endpoint; answers come from
datastores.serializers; changes go through datastores.services.
"""
from django.core.exceptions import ValidationError
from django.urls import path

from datastores import status as ds_status
from datastores.engine.datastore import format_time, validate_ns
from datastores.engine.errors import DatastoreError, GroupLockedError
from datastores.models import Datastore, validate_schedule
from datastores.serializers import config_json, prune_item_json, snapshot_json, usage_json
from datastores.services import create_datastore, keep_options_from, prune_plan, remove_datastore, snapshot_info
from datastores.services import start_store_task as start_task
from pbsweb.access import has_privilege, require
from pbsweb.api import endpoint, ok, parse_bool, parse_text, parse_uint
from pbsweb.errors import Conflict, NotFound, UserError

KEEPS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def _path(kw):
    return f"/datastore/{kw['store']}"


def _config(name: str, field: str = "store") -> Datastore:
    cfg = Datastore.objects.filter(name=name).first()
    if cfg is None:
        raise NotFound(field, f"no datastore '{name}'")
    return cfg


def _open(name: str):
    """(config, engine store) of the datastore in the URL."""
    cfg = _config(name)
    try:
        return cfg, cfg.engine()
    except DatastoreError as e:
        raise UserError("store", str(e)) from None


def _ns(value, field: str = "ns") -> str:
    try:
        return validate_ns(parse_text(value, field), field)
    except DatastoreError as e:
        raise UserError(field, str(e).removeprefix(f"{field}: ")) from None


def _snapshot_name(p: dict) -> str:
    """'type/id/time' from backup-type, backup-id and backup-time (epoch), as PBS passes a snapshot."""
    try:
        return f"{parse_text(p['backup-type'], 'backup-type')}/{parse_text(p['backup-id'], 'backup-id')}/" \
               f"{format_time(parse_uint(p['backup-time'], 'backup-time'))}"
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        raise UserError("backup-time", "backup-type, backup-id and backup-time (epoch) are needed together") \
            from None


def _keep_from_params(p) -> dict:
    return {f"keep_{k}": v for k in KEEPS
            if (v := parse_uint(p.get(f"keep-{k}"), f"keep-{k}")) is not None}


def datastore_status_list(request):
    """Any user; filtered to the stores they may audit or back up to (as PBS)."""
    return ok([usage_json(cfg) for cfg in Datastore.objects.all()
               if (has_privilege(request.user, "Datastore.Audit", f"/datastore/{cfg.name}")
                   or has_privilege(request.user, "Datastore.Backup", f"/datastore/{cfg.name}"))])


@require("Datastore.Prune", _path)
def snapshot_forget(request, store):
    """DELETE ?backup-type=&backup-id=&backup-time=[&ns=]: forget one snapshot, as PBS."""
    cfg, eng = _open(store)
    p = request.params
    name, ns = _snapshot_name(p), _ns(p.get("ns"))
    try:
        eng.remove_snapshot(eng.find_snapshot(name, ns))
    except GroupLockedError as e:      # a backup of the group is running (docs/PROTOCOL.md §4)
        raise Conflict("snapshot", str(e)) from None
    except DatastoreError as e:
        raise UserError("snapshot", str(e)) from None
    return ok()


@require("Datastore.Audit", _path)
def snapshot_list(request, store):
    cfg, eng = _open(store)
    p = request.params
    ns = _ns(p.get("ns"))
    try:
        refs = eng.list_snapshots(ns, recursive=parse_bool(p.get("recursive"), "recursive", True))
    except DatastoreError as e:
        raise UserError("ns", str(e)) from None
    t, i = p.get("backup-type"), p.get("backup-id")
    return ok([snapshot_json(eng, ref, snapshot_info(eng, ref)) for ref in refs
               if (not t or ref.backup_type == t) and (not i or ref.backup_id == i)])


@require("Datastore.Audit", _path)
def gc_status(request, store):
    return ok(ds_status.gc_status(_config(store)))


@require("Datastore.Modify", _path)
def gc_start(request, store):
    cfg, eng = _open(store)
    return ok(cfg.launch(request.user.username).upid)


@require("Datastore.Audit", _path)
def status(request, store):
    cfg, eng = _open(store)
    u = usage_json(cfg)
    c = ds_status.counts(eng)
    return ok({"total": u["total"], "used": u["used"], "avail": u["avail"], "counts": c.get("by_type"),
               "snapshots": c["snapshots"], "groups": c["groups"], "gc-status": ds_status.gc_status(cfg)})


@require("Datastore.Audit", _path)
def groups(request, store):
    cfg, eng = _open(store)
    ns = _ns(request.params.get("ns"))
    try:
        refs = eng.list_snapshots(ns, recursive=False)
    except DatastoreError as e:
        raise UserError("ns", str(e)) from None
    out = {}
    for r in refs:
        g = out.setdefault((r.backup_type, r.backup_id), {"backup-type": r.backup_type, "backup-id": r.backup_id,
                                                          "backup-count": 0, "last-backup": 0, "files": [],
                                                          "owner": eng.get_owner(ns, r.backup_type, r.backup_id)})
        g["backup-count"] += 1
        g["last-backup"] = max(g["last-backup"], r.time)
    return ok(list(out.values()))


@require("Datastore.Audit", _path)
def namespaces(request, store):
    cfg, eng = _open(store)
    return ok([{"ns": ns} for ns in eng.list_namespaces()])


@require("Datastore.Verify", _path)
def verify(request, store):
    cfg, eng = _open(store)
    p = request.params
    ignore = parse_bool(p.get("ignore-verified"), "ignore-verified", True)
    outdated = parse_uint(p.get("outdated-after"), "outdated-after", maximum=10 ** 6)
    ns = _ns(p.get("ns"))
    snapshot = None
    if p.get("backup-type") or p.get("backup-id") or p.get("backup-time"):
        snapshot = _snapshot_name(p)
        try:
            eng.find_snapshot(snapshot, ns)
        except DatastoreError as e:
            raise UserError("snapshot", str(e)) from None
    task = start_task("datastores.tasks.verify", "verify", f"{store}:{snapshot}" if snapshot else store,
                      request.user.username, {"store": store, "snapshot": snapshot, "ns": ns,
                                              "ignore_verified": ignore, "outdated_after": outdated})
    return ok(task.upid)


@require("Datastore.Prune", _path)
def prune(request, store):
    """Prune (one group with backup-type/backup-id, or every group under ns). dry-run returns the
    plan; otherwise the snapshots marked remove are removed and the plan is returned, as PBS."""
    cfg, eng = _open(store)
    p = request.params
    keep = _keep_from_params(p)
    dry_run = parse_bool(p.get("dry-run"), "dry-run", False)
    ns = _ns(p.get("ns"))
    t, i = parse_text(p.get("backup-type"), "backup-type"), parse_text(p.get("backup-id"), "backup-id")
    try:
        plan = prune_plan(eng, keep_options_from(keep), ns, recursive=not t)
    except DatastoreError as e:
        raise UserError("ns", str(e)) from None
    plan = [(r, m) for r, m in plan if (not t or r.backup_type == t) and (not i or r.backup_id == i)]
    if not dry_run:
        for ref, _mark in sorted((x for x in plan if x[1] == "remove"), key=lambda x: x[0].time):
            try:
                eng.remove_snapshot(ref)
            except DatastoreError as e:
                raise Conflict("snapshot", str(e)) from None
    return ok([prune_item_json(ref, mark) for ref, mark in plan])


@require("Datastore.Prune", _path)
def prune_datastore(request, store):
    _open(store)
    p = request.params
    keep = _keep_from_params(p)
    dry_run = parse_bool(p.get("dry-run"), "dry-run", False)
    ns = _ns(p.get("ns"))
    task = start_task("datastores.tasks.prune", "prune", store, request.user.username,
                      {"store": store, "ns": ns, "keep": keep, "dry_run": dry_run})
    return ok(task.upid)


def config_list(request):
    return ok([config_json(c) for c in Datastore.objects.all()
               if has_privilege(request.user, "Datastore.Audit", f"/datastore/{c.name}")])


@require("Datastore.Allocate", "/datastore")
def config_create(request):
    p = request.params
    schedule = parse_text(p.get("gc-schedule"), "gc-schedule", "daily")
    try:
        validate_schedule(schedule)
    except ValidationError as e:
        raise UserError("gc-schedule", e.messages[0]) from None
    cfg = create_datastore(parse_text(p.get("name"), "name"), parse_text(p.get("path"), "path"),
                           parse_text(p.get("comment"), "comment"), schedule,
                           parse_bool(p.get("verify-new"), "verify-new", False))
    return ok(config_json(cfg))


def _name_path(kw):
    return f"/datastore/{kw['name']}"


@require("Datastore.Audit", _name_path)
def config_get(request, name):
    return ok(config_json(_config(name, "name")))


@require("Datastore.Allocate", _name_path)
def config_remove(request, name):
    remove_datastore(_config(name, "name"))
    return ok()


urlpatterns = [
    path("admin/datastore", endpoint(GET=datastore_status_list)),
    path("admin/datastore/<str:store>/snapshots", endpoint(GET=snapshot_list, DELETE=snapshot_forget)),
    path("admin/datastore/<str:store>/gc", endpoint(GET=gc_status, POST=gc_start)),
    path("admin/datastore/<str:store>/status", endpoint(GET=status)),
    path("admin/datastore/<str:store>/groups", endpoint(GET=groups)),
    path("admin/datastore/<str:store>/namespace", endpoint(GET=namespaces)),
    path("admin/datastore/<str:store>/verify", endpoint(POST=verify)),
    path("admin/datastore/<str:store>/prune", endpoint(POST=prune)),
    path("admin/datastore/<str:store>/prune-datastore", endpoint(POST=prune_datastore)),
    path("config/datastore", endpoint(GET=config_list, POST=config_create)),
    path("config/datastore/<str:name>", endpoint(GET=config_get, DELETE=config_remove)),
]
