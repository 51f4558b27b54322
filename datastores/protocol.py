"""The backup and reader protocol of `pbsweb-client` (docs/PROTOCOL.md): thin views over
datastores.sessions.

Every request carries its own credentials (an API token or HTTP basic auth with a
user's password); cookies are ignored, so no cross-site request can use them and
CSRF does not apply. Ownership as PBS: a group belongs to the user or token that
created it; Datastore.Backup may add snapshots to its own groups and read them,
never delete; Datastore.Read reads everything; Datastore.Prune prunes own groups.
"""
import base64
import binascii
import hashlib
import json
import shutil
import time
from functools import wraps

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from datastores.engine.blob import check_blob_crc
from datastores.engine.datastore import (SnapshotRef, parse_snapshot_name, validate_backup_id,
                                         validate_backup_type, validate_ns)
from datastores.engine.errors import DatastoreError, GroupLockedError
from datastores.engine.manifest import MANIFEST_NAME
from datastores.engine.prune import KeepOptions, PruneItem, compute_prune, prune_mark_kept
from datastores.models import Datastore as StoreConfig
from datastores.models import StorageNode
from datastores.sessions import IDLE_TIMEOUT, Session, SessionError, open_session
from pbsweb.access import user_privileges
from pbsweb.apitokens import HEADER_PREFIX, authenticate_token

MAX_FILE = 256 << 20          # an index of a 1 TiB archive is ~10 MiB; the catalog may be larger


class Caller:
    """Who is calling: the user (for privileges) and the auth id that owns groups."""

    def __init__(self, user, auth_id: str):
        self.user, self.auth_id = user, auth_id

    def privs(self, store: str, ns: str = "") -> set[str]:
        path = f"/datastore/{store}" + (f"/{ns}" if ns else "")
        return user_privileges(self.user, path)

    def owns(self, owner: str | None) -> bool:
        # A user also owns the groups of its own tokens, as in PBS.
        return owner is not None and (owner == self.auth_id or owner.startswith(self.auth_id + "!"))


def _caller(request) -> Caller:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header.startswith(HEADER_PREFIX):
        user = authenticate_token(request)
        if user is None:
            raise SessionError(401, "authentication failed: invalid API token")
        user.api_token = request._api_token  # its rights: the token's own ACL ∩ its user's (PBS)
        return Caller(user, request._api_token.tokenid)
    if header.startswith("Basic "):
        return Caller(*_password_user(request, header))
    raise SessionError(401, "authentication required: an API token or a user name and password")


# Verified passwords, per process: a backup sends thousands of requests and checking the
# password hash (deliberately slow) on each would cost seconds of CPU. Keyed by a hash of
# the header, never the password; an entry lives PASSWORD_CACHE_SECONDS.
PASSWORD_CACHE_SECONDS = 300
_password_cache: dict[str, tuple[int, float]] = {}


def _password_user(request, header: str):
    key = hashlib.sha256(header.encode()).hexdigest()
    hit = _password_cache.get(key)
    if hit and hit[1] > time.monotonic():
        user = get_user_model().objects.filter(pk=hit[0], is_active=True).first()
        if user is not None:
            return user, user.username
    try:
        username, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise SessionError(401, "authentication failed: malformed basic auth header") from None
    user = authenticate(request, username=username, password=password)
    if user is None or not user.is_active:
        raise SessionError(401, "authentication failed: wrong user name or password")
    _password_cache[key] = (user.pk, time.monotonic() + PASSWORD_CACHE_SECONDS)
    return user, user.username


def endpoint(view):
    """Authenticate, find the store, turn refusals into JSON errors with their status."""
    @csrf_exempt
    @wraps(view)
    def wrapper(request, store, *args, **kwargs):
        try:
            caller = _caller(request)
            try:
                cfg = StoreConfig.objects.get(name=store)
            except StoreConfig.DoesNotExist:
                raise SessionError(404, f"datastore '{store}' does not exist") from None
            if not caller.privs(store) and not any(
                    caller.privs(store, ns) for ns in _param_ns(request)):
                raise SessionError(403, f"permission check failed: no privilege on /datastore/{store}")
            try:
                eng = cfg.engine()
            except DatastoreError:
                # Several nodes: a store's disk is on one of them (README, "several worker nodes").
                raise SessionError(421, f"datastore '{store}' is not on this node ({settings.NODE_NAME}); "
                                        f"connect to {_node_of(cfg)}, the node that holds its disk") from None
            return view(request, caller, cfg, eng, *args, **kwargs)
        except SessionError as e:
            return JsonResponse({"errors": str(e)}, status=e.status)
        except GroupLockedError as e:      # forget/prune while a backup of the group runs
            return JsonResponse({"errors": str(e)}, status=409)
        except DatastoreError as e:
            return JsonResponse({"errors": str(e)}, status=400)
    return wrapper


def _node_of(cfg) -> str:
    node = StorageNode.objects.filter(name=cfg.node).first() if cfg.node else None
    return f"{node.name} ({node.address})" if node else (cfg.node or "the node")


def _param_ns(request) -> list[str]:
    ns = request.GET.get("ns", "")
    return [ns] if ns else []


def _json(request) -> dict:
    try:
        doc = json.loads(request.read(1 << 20) or b"{}")
    except ValueError:
        raise SessionError(400, "request body: not valid JSON") from None
    if not isinstance(doc, dict):
        raise SessionError(400, "request body: not a JSON object")
    return doc


def _body(request, limit: int) -> bytes:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise SessionError(400, "Content-Length: not a number") from None
    if length > limit:
        raise SessionError(413, f"request body: {length} bytes is more than {limit}")
    data = request.read(length)
    if len(data) != length:
        raise SessionError(400, "request body: connection closed before the whole body arrived")
    return data


def _need(caller: Caller, store: str, ns: str, priv: str, what: str) -> None:
    if priv not in caller.privs(store, ns):
        raise SessionError(403, f"permission check failed: {what} needs {priv} on "
                                f"/datastore/{store}" + (f"/{ns}" if ns else ""))


def _check_owner(caller: Caller, eng, ns: str, backup_type: str, backup_id: str) -> None:
    owner = eng.get_owner(ns, backup_type, backup_id)
    if not caller.owns(owner):
        raise SessionError(403, f"backup group {backup_type}/{backup_id} belongs to {owner}, "
                                f"not to {caller.auth_id}")


def _method(request, *allowed) -> None:
    if request.method not in allowed:
        raise SessionError(405, f"method {request.method} not allowed here")


# -- backup sessions ----------------------------------------------------------------------

@endpoint
def backup_start(request, caller, cfg, eng):
    """POST {ns, backup-type, backup-id, backup-time, encrypted} -> {session, previous}."""
    _method(request, "POST")
    doc = _json(request)
    ns = validate_ns(doc.get("ns") or "")
    btype = validate_backup_type(doc.get("backup-type", "host"))
    bid = validate_backup_id(doc.get("backup-id", ""))
    try:
        btime = int(doc["backup-time"])
    except (KeyError, TypeError, ValueError):
        raise SessionError(400, "backup-time: an epoch time in seconds is required") from None
    _need(caller, cfg.name, ns, "Datastore.Backup", "a backup")
    if ns and not eng.ns_path(ns).is_dir():
        raise SessionError(400, f"ns: namespace {ns} does not exist in datastore {cfg.name}")
    ref = SnapshotRef.make(ns, btype, bid, btime)
    owner = eng.get_owner(ns, btype, bid)
    if owner is None:
        eng.set_owner(ns, btype, bid, caller.auth_id)
    elif not caller.owns(owner):
        raise SessionError(403, f"backup group {btype}/{bid} belongs to {owner}, not to {caller.auth_id}")
    group = [r for r in eng.list_snapshots(ns, recursive=False)
             if (r.backup_type, r.backup_id) == (btype, bid)]
    if any(r.time >= btime for r in group):
        raise SessionError(400, f"backup-time: the group already has a snapshot at or after "
                                f"{ref.time_str}")
    previous = None
    for r in reversed(group):
        if r.finished:
            state = (eng.load_manifest(r).verify_state or {}).get("state")
            if state != "failed":      # chunks of a snapshot that failed verification are not reused
                previous = r
            break
    session = open_session(eng, cfg.name, "backup", caller.auth_id, ref, bool(doc.get("encrypted")),
                           previous.rel_dir if previous else None)
    return JsonResponse({"session": session.info.sid, "upid": session.info.upid,
                         "previous": previous.name if previous else None, "idle-timeout": IDLE_TIMEOUT})


def _session(request, caller, eng, sid, kind) -> Session:
    return Session(eng, sid).check(caller.auth_id, kind)


@endpoint
def backup_chunk(request, caller, cfg, eng, sid, digest):
    _method(request, "POST")
    session = _session(request, caller, eng, sid, "backup")
    new = session.put_chunk(digest, _body(request, 32 << 20))
    return JsonResponse({"digest": digest, "new": new})


@endpoint
def backup_previous(request, caller, cfg, eng, sid, filename):
    _method(request, "GET")
    session = _session(request, caller, eng, sid, "backup")
    return HttpResponse(session.previous_file(filename), content_type="application/octet-stream")


@endpoint
def backup_file(request, caller, cfg, eng, sid, filename):
    _method(request, "POST")
    session = _session(request, caller, eng, sid, "backup")
    return JsonResponse(session.put_file(filename, _body(request, MAX_FILE)))


@endpoint
def backup_ping(request, caller, cfg, eng, sid):
    _method(request, "POST")
    session = _session(request, caller, eng, sid, "backup")
    session.log_progress()
    return JsonResponse({"ok": True})


@endpoint
def backup_finish(request, caller, cfg, eng, sid):
    _method(request, "POST")
    session = _session(request, caller, eng, sid, "backup")
    return JsonResponse(session.finish(_body(request, 1 << 20)))


@endpoint
def session_abort(request, caller, cfg, eng, sid):
    _method(request, "POST")
    session = Session(eng, sid)
    if session.info.auth_id != caller.auth_id:
        raise SessionError(403, f"session {sid} belongs to another client")
    reason = str(_json(request).get("reason") or "aborted by the client")[:200]
    if session.ended() is None:
        session.end(False, f"client: {reason}")
    return JsonResponse({"ok": True})


# -- reader sessions ----------------------------------------------------------------------

def _find_snapshot(eng, doc) -> SnapshotRef:
    ns = validate_ns(doc.get("ns") or "")
    t, i, tm = parse_snapshot_name(str(doc.get("snapshot", "")))
    ref = eng.snapshot_ref(ns, t, i, tm)
    if not ref.finished:
        raise SessionError(404, f"snapshot {ref} is unfinished")
    return ref


def _check_read(caller, cfg, eng, ref) -> None:
    privs = caller.privs(cfg.name, ref.ns)
    if "Datastore.Read" in privs:
        return
    if "Datastore.Backup" in privs:
        _check_owner(caller, eng, ref.ns, ref.backup_type, ref.backup_id)
        return
    raise SessionError(403, f"permission check failed: reading needs Datastore.Read on "
                            f"/datastore/{cfg.name}, or Datastore.Backup and ownership of the group")


@endpoint
def reader_start(request, caller, cfg, eng):
    """POST {ns, snapshot} -> {session, manifest (base64 blob)}."""
    _method(request, "POST")
    ref = _find_snapshot(eng, _json(request))
    _check_read(caller, cfg, eng, ref)
    session = open_session(eng, cfg.name, "reader", caller.auth_id, ref, digests=eng.chunk_digests(ref))
    manifest = (eng.snapshot_path(ref) / MANIFEST_NAME).read_bytes()
    return JsonResponse({"session": session.info.sid, "upid": session.info.upid,
                         "manifest": base64.b64encode(manifest).decode()})


@endpoint
def reader_chunk(request, caller, cfg, eng, sid, digest):
    _method(request, "GET")
    session = _session(request, caller, eng, sid, "reader")
    return HttpResponse(session.read_chunk(digest), content_type="application/octet-stream")


@endpoint
def reader_file(request, caller, cfg, eng, sid, filename):
    _method(request, "GET")
    session = _session(request, caller, eng, sid, "reader")
    return HttpResponse(session.read_file(filename), content_type="application/octet-stream")


@endpoint
def reader_finish(request, caller, cfg, eng, sid):
    _method(request, "POST")
    session = _session(request, caller, eng, sid, "reader")
    return JsonResponse(session.finish_reader())


# -- listing, status, forget, prune, catalog upload --------------------------------------------

def _sees_all(caller, store, ns) -> bool:
    return bool({"Datastore.Audit", "Datastore.Read"} & caller.privs(store, ns))


@endpoint
def groups(request, caller, cfg, eng):
    _method(request, "GET")
    ns = validate_ns(request.GET.get("ns", ""))
    all_ = _sees_all(caller, cfg.name, ns)
    out: dict = {}
    for r in eng.list_snapshots(ns, recursive=False):
        owner = eng.get_owner(ns, r.backup_type, r.backup_id)
        if not (all_ or caller.owns(owner)):
            continue
        g = out.setdefault((r.backup_type, r.backup_id), {
            "backup-type": r.backup_type, "backup-id": r.backup_id, "owner": owner,
            "backup-count": 0, "last-backup": None})
        if r.finished:
            g["backup-count"] += 1
            g["last-backup"] = r.time
    return JsonResponse({"data": list(out.values())})


@endpoint
def snapshots(request, caller, cfg, eng):
    _method(request, "GET")
    ns = validate_ns(request.GET.get("ns", ""))
    group = request.GET.get("group", "")
    all_ = _sees_all(caller, cfg.name, ns)
    out = []
    for r in eng.list_snapshots(ns, recursive=False):
        if not r.finished or (group and f"{r.backup_type}/{r.backup_id}" != group):
            continue
        owner = eng.get_owner(ns, r.backup_type, r.backup_id)
        if not (all_ or caller.owns(owner)):
            continue
        m = eng.load_manifest(r)
        out.append({"backup-type": r.backup_type, "backup-id": r.backup_id, "backup-time": r.time,
                    "snapshot": r.name, "owner": owner, "protected": r.protected,
                    "files": m.filenames, "size": sum(int(f["size"]) for f in m.files),
                    "encrypted": m.encrypted, "fingerprint": m.key_fingerprint})
    return JsonResponse({"data": out})


@endpoint
def status(request, caller, cfg, eng):
    _method(request, "GET")
    usage = shutil.disk_usage(eng.path)
    return JsonResponse({"data": {"store": cfg.name, "total": usage.total, "used": usage.used,
                                  "avail": usage.free}})


def _check_remove(caller, cfg, eng, ns, btype, bid, what) -> None:
    privs = caller.privs(cfg.name, ns)
    if "Datastore.Modify" in privs:
        return
    if "Datastore.Prune" in privs:
        _check_owner(caller, eng, ns, btype, bid)
        return
    raise SessionError(403, f"permission check failed: {what} needs Datastore.Modify, or "
                            f"Datastore.Prune on your own group (Datastore.Backup is append-only)")


@endpoint
def forget(request, caller, cfg, eng):
    """POST {ns, snapshot}: remove one snapshot."""
    _method(request, "POST")
    doc = _json(request)
    ns = validate_ns(doc.get("ns") or "")
    t, i, tm = parse_snapshot_name(str(doc.get("snapshot", "")))
    _check_remove(caller, cfg, eng, ns, t, i, "forget")
    ref = eng.snapshot_ref(ns, t, i, tm)
    eng.remove_snapshot(ref)
    return JsonResponse({"removed": ref.name})


@endpoint
def prune(request, caller, cfg, eng):
    """POST {ns, group: TYPE/ID, keep-last…, dry-run} -> [{snapshot, keep}]."""
    _method(request, "POST")
    doc = _json(request)
    ns = validate_ns(doc.get("ns") or "")
    btype, _, bid = str(doc.get("group", "")).partition("/")
    validate_backup_type(btype, "group")
    validate_backup_id(bid, "group")
    _check_remove(caller, cfg, eng, ns, btype, bid, "prune")
    keep = {}
    for k in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        v = doc.get(f"keep-{k}")
        if v is not None:
            if not isinstance(v, int) or v < 0:
                raise SessionError(400, f"keep-{k}: must be a number of at least 0")
            keep[f"keep_{k}"] = v
    items = [PruneItem(r, r.time, r.finished, r.protected) for r in eng.list_snapshots(ns, recursive=False)
             if (r.backup_type, r.backup_id) == (btype, bid)]
    plan = [(item, mark, prune_mark_kept(mark)) for item, mark in compute_prune(items, KeepOptions(**keep))]
    if not doc.get("dry-run"):
        # Refused (409) while a backup of the group runs, even with nothing to remove (PROTOCOL.md §4).
        with eng.group_lock(ns, btype, bid):
            for item, _mark, kept in plan:
                if not kept:
                    eng.remove_snapshot(item.key, group_locked=True)
    return JsonResponse({"data": [{"snapshot": item.key.name, "keep": kept, "mark": mark}
                                  for item, mark, kept in plan]})


@endpoint
def catalog_upload(request, caller, cfg, eng):
    """PUT ?ns=&snapshot=: replace a snapshot's catalog.blob (rebuilt by the client)."""
    _method(request, "POST")
    ref = _find_snapshot(eng, {"ns": request.GET.get("ns", ""), "snapshot": request.GET.get("snapshot", "")})
    privs = caller.privs(cfg.name, ref.ns)
    if "Datastore.Modify" not in privs:
        _need(caller, cfg.name, ref.ns, "Datastore.Backup", "a catalog rebuild")
        _check_owner(caller, eng, ref.ns, ref.backup_type, ref.backup_id)
    data = _body(request, MAX_FILE)
    if not check_blob_crc(data):
        raise SessionError(400, "catalog: CRC mismatch or not a blob")
    eng.write_file_atomic(f"{ref.rel_dir}/catalog.blob", data)
    return JsonResponse({"snapshot": ref.name, "size": len(data)})
