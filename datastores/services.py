"""The operations that forms, commands and the API share (thin, over the engine)."""
import hashlib
import logging
import os
import shutil
import ssl
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone as djtz

from datastores.engine.crypto import create_keyfile
from datastores.engine.datastore import MARKER
from datastores.engine.datastore import Datastore as EngineStore
from datastores.engine.errors import DatastoreError
from datastores.engine.prune import KeepOptions, PruneItem, compute_prune
from datastores.models import NAME_RE, Datastore, StorageNode
from pbsweb.errors import Conflict, UserError
from pbsweb.paths import overlaps_data_dir
from pbsweb.secretbox import encrypt_secret, ensure_key
from pbsweb.worker import run

RESERVED_NAMES = {"add", "create"}   # URLs under /datastore/
log = logging.getLogger(__name__)


FieldError = UserError  # this app's name for it before pbsweb.errors existed


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise FieldError("name", f"{name!r} is not a valid datastore name (3-32 characters: letters, digits, "
                                 "'_' and '-', not starting with '-')")
    if name in RESERVED_NAMES:
        raise FieldError("name", f"'{name}' is reserved; choose another name")
    if Datastore.objects.filter(name=name).exists():
        raise FieldError("name", f"datastore '{name}' already exists")
    return name


def check_path(path: str) -> Path:
    if not path:
        raise FieldError("path", "this field is required")
    if "\0" in path or "\n" in path:
        raise FieldError("path", "contains invalid characters")
    if not os.path.isabs(path):
        raise FieldError("path", f"{path!r} must be an absolute path")
    p = Path(os.path.normpath(path))
    real = Path(os.path.realpath(p))
    problem = overlaps_data_dir(p)
    if problem:
        raise FieldError("path", problem)
    for other in Datastore.objects.all():
        o = Path(os.path.realpath(other.path))
        if real == o:
            raise FieldError("path", f"{p} is already used by datastore '{other.name}'")
        if o in real.parents:
            raise FieldError("path", f"{p} is inside datastore '{other.name}' ({other.path})")
        if real in o.parents:
            raise FieldError("path", f"{p} contains datastore '{other.name}' ({other.path})")
    # an unregistered datastore inside an ancestor
    for parent in real.parents:
        if (parent / MARKER).exists():
            raise FieldError("path", f"{p} is inside an existing datastore at {parent}")
    if p.exists():
        if not p.is_dir():
            raise FieldError("path", f"{p} exists and is not a directory")
        if any(p.iterdir()) and not (p / MARKER).exists():
            raise FieldError("path", f"{p} is not empty and is not a datastore; refusing to use it")
    return p


def create_datastore(name: str, path: str, comment: str = "", schedule: str = "daily",
                     verify_new: bool = False) -> Datastore:
    """Validate everything, create the store on disk, then the config; undo the disk part on failure."""
    check_name(name)
    p = check_path(path)
    if comment and ("\n" in comment or len(comment) > 255):
        raise FieldError("comment", "must be one line of at most 255 characters")
    existed = p.exists()
    reuse = (p / MARKER).exists()
    try:
        EngineStore.create(p, reuse=reuse)
    except DatastoreError as e:
        msg = str(e)
        raise FieldError("path", msg[6:] if msg.startswith("path: ") else msg) from None
    try:
        with transaction.atomic():
            # Created here, so its disk is on this node (README "Deployment: several worker nodes").
            store = Datastore(name=name, path=str(p), comment=comment, schedule=schedule, verify_new=verify_new,
                              node=settings.NODE_NAME)
            store.next_run = store.compute_next_run()
            store.save()
    except IntegrityError:
        if not reuse:
            _undo_create(p, existed)
        raise FieldError("name", f"datastore '{name}' already exists") from None
    except BaseException:
        if not reuse:
            _undo_create(p, existed)
        raise
    register_this_node()
    return store


# -- nodes and Show Connection Information (docs/PROTOCOL.md §1) --------------------------------

def certificate_fingerprint() -> str:
    """SHA-256 of this node's TLS certificate, as `pbsweb-client --fingerprint` expects it."""
    try:
        der = ssl.PEM_cert_to_DER_cert(Path(settings.TLS_CERT_FILE).read_text())
    except (OSError, ValueError):
        return ""
    return ":".join(f"{b:02x}" for b in hashlib.sha256(der).digest())


def register_this_node() -> StorageNode:
    """Record how clients reach this node (PBSWEB_NODE_ADDRESS) and its certificate's fingerprint."""
    node, _ = StorageNode.objects.update_or_create(
        name=settings.NODE_NAME, defaults={"address": settings.NODE_ADDRESS,
                                           "fingerprint": certificate_fingerprint()})
    return node


def connection_info(store: Datastore, username: str, console_host: str) -> dict:
    """What Datastore → Summary → Show Connection Information shows, as PBS: the repository
    string and fingerprint of the node that holds the store's disk (each storage node serves
    the protocol for its own stores). The console's own stores: the host the console was opened on."""
    node = StorageNode.objects.filter(name=store.node).first() if store.node else None
    if store.node and store.node != settings.NODE_NAME:
        address = node.address if node else f"{store.node}:8007"
        return {"repository": f"{username}@{address}:{store.name}", "node": store.node,
                "fingerprint": node.fingerprint if node else ""}
    host = console_host
    if not host.rsplit(":", 1)[-1].isdigit() or host.endswith("]"):
        host = f"{host}:8007"
    return {"repository": f"{username}@{host}:{store.name}", "node": store.node or settings.NODE_NAME,
            "fingerprint": certificate_fingerprint()}


def _undo_create(p: Path, existed: bool) -> None:
    if existed:
        shutil.rmtree(p / ".chunks", ignore_errors=True)
        try:
            (p / MARKER).unlink()
        except FileNotFoundError:
            pass
    else:
        shutil.rmtree(p, ignore_errors=True)


def get_store(name: str) -> Datastore:
    try:
        return Datastore.objects.get(name=name)
    except Datastore.DoesNotExist:
        raise FieldError("store", f"no datastore '{name}'") from None


def open_store(store: Datastore) -> EngineStore:
    try:
        return store.engine()
    except DatastoreError as e:
        raise FieldError("store", f"datastore '{store.name}' is not available: {e}") from None


def snapshot_info(eng: EngineStore, ref) -> dict:
    """What the snapshot lists show: PBS field names plus display helpers."""
    info = {
        "ns": ref.ns, "backup-type": ref.backup_type, "backup-id": ref.backup_id, "backup-time": ref.time,
        "snapshot": ref.name, "protected": ref.protected, "finished": ref.finished,
        "files": [], "size": None, "comment": "", "verification": None, "fingerprint": None,
        "encrypted": False, "notes": "",
    }
    if not ref.finished:
        return info
    try:
        m = eng.load_manifest(ref)
    except DatastoreError as e:
        info["error"] = str(e)
        return info
    info["files"] = [f["filename"] for f in m.files] + ["index.json.blob"]
    info["file_entries"] = m.files
    info["size"] = sum(int(f["size"]) for f in m.files)
    info["encrypted"] = m.encrypted
    info["fingerprint"] = m.key_fingerprint
    info["notes"] = m.notes
    info["comment"] = (m.notes or "").splitlines()[0] if m.notes else ""
    info["verification"] = m.verify_state
    return info


def keep_options_from(values: dict):
    """KeepOptions from a dict of keep_* (ints or None); FieldError naming a bad one."""
    kw = {}
    for k in ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"):
        v = values.get(k)
        if v in (None, ""):
            continue
        try:
            v = int(v)
        except (TypeError, ValueError):
            raise FieldError(k.replace("_", "-"), f"{v!r} is not a number") from None
        if v < 0:
            raise FieldError(k.replace("_", "-"), "must not be negative")
        kw[k] = v
    return KeepOptions(**kw)


def prune_plan(eng: EngineStore, keep, ns: str = "", recursive: bool = True, tz=None):
    """[(ref, mark)] for every group below ns, newest first within each group."""
    tz = tz or djtz.get_current_timezone()
    groups: dict = {}
    for ref in eng.list_snapshots(ns, recursive=recursive):
        groups.setdefault((ref.ns, ref.backup_type, ref.backup_id), []).append(ref)
    out = []
    for key in sorted(groups):
        items = [PruneItem(r, r.time, r.finished, r.protected) for r in groups[key]]
        out.extend((item.key, mark) for item, mark in compute_prune(items, keep, tz))
    return out


def start_store_task(function: str, worker_type: str, worker_id: str, user: str, arguments: dict):
    """Queue a task of the datastore `arguments["store"]` (on that datastore's queue)."""
    return run(function, worker_type, worker_id, user, arguments, store=arguments["store"])


def remove_datastore(cfg: Datastore) -> None:
    """Remove a datastore from the configuration (its data stays on disk). Jobs of other apps
    that protect it (sync jobs) must be removed first."""
    try:
        with transaction.atomic():
            cfg.delete()
    except ProtectedError as e:
        users = sorted({f"{type(o)._meta.verbose_name} '{getattr(o, 'job_id', None) or getattr(o, 'name', None) or o.pk}'"
                        for o in e.protected_objects})
        raise Conflict("name", f"datastore '{cfg.name}' is still used by {', '.join(users)}; "
                                 "remove those first") from None


def check_no_key(cfg: Datastore) -> None:
    """Conflict if the datastore has a key (or a key file lies where its key would go)."""
    if cfg.key_fingerprint:
        raise Conflict("key", f"Datastore '{cfg.name}' already has key {cfg.key_fingerprint}; "
                              "a key is never replaced (snapshots encrypted with it would become unreadable).")
    if cfg.key_path.exists():
        raise Conflict("key", f"A key file already exists at {cfg.key_path}; remove or move it first.")


def create_datastore_key(cfg: Datastore, kdf: str, passphrase: str | None, hint: str | None = None) -> str:
    """Create the datastore's encryption key file and record it (passphrase stored encrypted, so
    scheduled jobs can use the key); returns its fingerprint. A key is never replaced."""
    check_no_key(cfg)
    path = cfg.key_path
    ensure_key()
    stored = encrypt_secret(passphrase) if passphrase else ""
    try:
        fp = create_keyfile(path, kdf, passphrase, hint=hint or None)
    except DatastoreError as e:
        raise UserError("key", str(e)) from None
    try:
        Datastore.objects.filter(pk=cfg.pk).update(key_fingerprint=fp, key_kdf=kdf, key_passphrase=stored)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return fp
