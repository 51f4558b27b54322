"""Datastore pages as PBS: Summary, Content, Prune & GC, Verify Jobs, Options, Encryption."""
import json
import os
import tempfile
from urllib.parse import urlencode

from django.contrib import messages
from django.http import FileResponse, Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST, require_safe

from datastores import status as ds_status
from datastores.engine.catalog import read_catalog
from datastores.engine.crypto import keyfile_info, paper_key
from datastores.engine.datastore import validate_ns
from datastores.engine.errors import DatastoreError
from datastores.engine.restore import open_archive_stream, restore_file
from datastores.forms import (
    DatastoreAddForm,
    DatastoreOptionsForm,
    KeepForm,
    KeyForm,
    NotesForm,
    PruneJobForm,
    VerifyJobForm,
)
from datastores.models import Datastore, PruneJob, VerifyJob
from datastores.services import (
    FieldError,
    check_no_key,
    connection_info,
    create_datastore_key,
    keep_options_from,
    prune_plan,
    remove_datastore,
    snapshot_info,
)
from datastores.services import start_store_task as start_task
from pbsweb.access import has_privilege, require
from pbsweb.errors import UserError
from pbsweb.security import plain_error


def _path(kw):
    return f"/datastore/{kw['store']}"


def _store(name):
    return get_object_or_404(Datastore, name=name)


def _engine(cfg):
    try:
        return cfg.engine(), None
    except DatastoreError as e:
        return None, str(e)


def _ctx(request, cfg, tab, **extra):
    ctx = {"store": cfg, "current_store": cfg.name, "tab": tab,
           "can_modify": has_privilege(request.user, "Datastore.Modify", f"/datastore/{cfg.name}"),
           "can_read": has_privilege(request.user, "Datastore.Read", f"/datastore/{cfg.name}"),
           "can_prune": has_privilege(request.user, "Datastore.Prune", f"/datastore/{cfg.name}"),
           "can_verify": has_privilege(request.user, "Datastore.Verify", f"/datastore/{cfg.name}")}
    ctx.update(extra)
    return ctx


def _to_task(request, task):
    url = task.url
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


def _snapshot(eng, snapshot, ns):
    try:
        ref = eng.find_snapshot(snapshot, validate_ns(ns or ""))
    except DatastoreError:
        raise Http404(f"no snapshot {snapshot}") from None
    return ref


def _content_url(cfg):
    return f"/datastore/{cfg.name}/content/"


# -- list / add -------------------------------------------------------------------------

def _overview(request, form=None, show_dialog=False, status=200):
    rows = []
    for cfg in Datastore.objects.all():
        if not has_privilege(request.user, "Datastore.Audit", f"/datastore/{cfg.name}"):
            continue  # as PBS: everyone sees the list, filtered to the stores they may audit
        rows.append({"store": cfg, "usage": ds_status.usage(cfg.path)})
    return render(request, "datastores/list.html", {
        "rows": rows, "form": form or DatastoreAddForm(), "show_dialog": show_dialog}, status=status)


@require_safe
def datastore_list(request):
    return _overview(request)


@require_safe
@require("Datastore.Audit")
def datastore_add(request):
    """The Add Datastore dialog (opened over the datastore overview)."""
    if request.htmx:
        return render(request, "datastores/add_dialog.html", {"form": DatastoreAddForm()})
    return _overview(request, show_dialog=True)


@require_POST
@require("Datastore.Allocate", "/datastore")
def datastore_create(request):
    form = DatastoreAddForm(request.POST)
    cfg = form.save() if form.is_valid() else None
    if cfg is None:
        return _overview(request, form=form, show_dialog=True, status=400)
    messages.success(request, f"Datastore '{cfg.name}' created at {cfg.path}.")
    return redirect(f"/datastore/{cfg.name}/")


# -- summary ----------------------------------------------------------------------------------

@require_safe
@require("Datastore.Audit", _path)
def summary(request, store):
    cfg = _store(store)
    eng, error = _engine(cfg)
    return render(request, "datastores/summary.html", _ctx(
        request, cfg, "summary", error=error, usage=ds_status.usage(cfg.path),
        counts=ds_status.counts(eng) if eng else None, gc=ds_status.gc_status(cfg),
        uuid=eng.uuid if eng else "", connection=connection_info(cfg, request.user.username, request.get_host())))


# -- content ----------------------------------------------------------------------------------

def _content_tree(eng):
    """[{ns, groups: [{type, id, owner, snapshots: [info…] newest first, last, count}]}]."""
    tree = {}
    for ref in eng.list_snapshots(""):
        info = snapshot_info(eng, ref)
        groups = tree.setdefault(ref.ns, {})
        groups.setdefault((ref.backup_type, ref.backup_id), []).append(info)
    out = []
    for ns in eng.list_namespaces():
        groups = []
        for (t, i), snaps in sorted(tree.get(ns, {}).items()):
            snaps.sort(key=lambda s: s["backup-time"], reverse=True)
            groups.append({"type": t, "id": i, "name": f"{t}/{i}", "snapshots": snaps, "count": len(snaps),
                           "owner": eng.get_owner(ns, t, i) or "",
                           "last": snaps[0]["backup-time"] if snaps else None,
                           "size": sum(s["size"] or 0 for s in snaps)})
        out.append({"ns": ns, "depth": ns.count("/") + 1 if ns else 0, "groups": groups})
    return out


@require_safe
@require("Datastore.Audit", _path)
def content(request, store):
    cfg = _store(store)
    eng, error = _engine(cfg)
    tree = _content_tree(eng) if eng else []
    return render(request, "datastores/content.html", _ctx(request, cfg, "content", error=error, tree=tree))


@require_POST
@require("Datastore.Prune", _path)
def snapshot_forget(request, store, snapshot):
    cfg = _store(store)
    eng, error = _engine(cfg)
    if eng is None:
        messages.error(request, error)
        return redirect(_content_url(cfg))
    ref = _snapshot(eng, snapshot, request.POST.get("ns", ""))
    try:
        eng.remove_snapshot(ref)
        messages.success(request, f"Snapshot {ref} removed.")
    except DatastoreError as e:
        messages.error(request, str(e))
    return redirect(_content_url(cfg))


@require_POST
@require("Datastore.Modify", _path)
def snapshot_protect(request, store, snapshot):
    cfg = _store(store)
    eng, error = _engine(cfg)
    if eng is None:
        messages.error(request, error)
        return redirect(_content_url(cfg))
    ref = _snapshot(eng, snapshot, request.POST.get("ns", ""))
    protect = request.POST.get("protected", "true") in ("true", "1", "on")
    eng.set_protected(ref, protect)
    messages.success(request, f"Snapshot {ref} is {'now protected' if protect else 'no longer protected'}.")
    return redirect(_content_url(cfg))


@require_safe
@require("Datastore.Audit", _path)
def snapshot_notes(request, store, snapshot):
    cfg = _store(store)
    eng, error = _engine(cfg)
    if eng is None:
        raise Http404(error)
    ns = request.GET.get("ns", "")
    ref = _snapshot(eng, snapshot, ns)
    try:
        notes = eng.load_manifest(ref).notes
    except DatastoreError as e:
        return plain_error(str(e))
    form = NotesForm(initial={"notes": notes})
    template = "datastores/notes_dialog.html"
    return render(request, template, {"store": cfg, "ref": ref, "ns": ns, "form": form,
                                      "standalone": not request.htmx, "current_store": cfg.name})


@require_POST
@require("Datastore.Modify", _path)
def snapshot_notes_save(request, store, snapshot):
    cfg = _store(store)
    eng, error = _engine(cfg)
    if eng is None:
        raise Http404(error)
    ns = request.POST.get("ns", "")
    ref = _snapshot(eng, snapshot, ns)
    form = NotesForm(request.POST)
    if not form.is_valid():
        return render(request, "datastores/notes_dialog.html", {
            "store": cfg, "ref": ref, "ns": ns, "form": form, "standalone": True, "current_store": cfg.name},
            status=400)
    try:
        eng.set_notes(ref, form.cleaned_data["notes"].replace("\r\n", "\n"))
        messages.success(request, f"Notes of {ref} saved.")
    except DatastoreError as e:
        messages.error(request, str(e))
    return redirect(_content_url(cfg))


@require_POST
@require("Datastore.Verify", _path)
def snapshot_verify(request, store, snapshot):
    cfg = _store(store)
    eng, error = _engine(cfg)
    if eng is None:
        raise Http404(error)
    ns = request.POST.get("ns", "")
    ref = _snapshot(eng, snapshot, ns)
    task = start_task("datastores.tasks.verify", "verify", f"{cfg.name}:{ref}", request.user.username,
                      {"store": cfg.name, "snapshot": ref.name, "ns": ref.ns})
    return _to_task(request, task)


@require_POST
@require("Datastore.Read", _path)
def snapshot_catalog_rebuild(request, store, snapshot):
    cfg = _store(store)
    eng, error = _engine(cfg)
    if eng is None:
        raise Http404(error)
    ref = _snapshot(eng, snapshot, request.POST.get("ns", ""))
    task = start_task("datastores.tasks.catalog_rebuild", "catalog", f"{cfg.name}:{ref}", request.user.username,
                      {"store": cfg.name, "snapshot": ref.name, "ns": ref.ns})
    return _to_task(request, task)


def _key_for(cfg, eng, ref):
    """(crypt, error) for reading a snapshot from the web: the datastore's own key if it matches."""
    m = eng.load_manifest(ref)
    if not m.encrypted:
        return None, None
    if not cfg.key_fingerprint or m.key_fingerprint != cfg.key_fingerprint:
        return None, (f"snapshot {ref} is encrypted with key {m.key_fingerprint}; this datastore has "
                      f"{'key ' + cfg.key_fingerprint if cfg.key_fingerprint else 'no key'}, so it cannot be "
                      f"read here. Restore it with the CLI and the key file.")
    try:
        return cfg.crypt_config(), None
    except DatastoreError as e:
        return None, str(e)


def _stream(reader, block=1 << 20):
    try:
        while True:
            data = reader.read(block)
            if not data:
                break
            yield data
    finally:
        reader.close()


@require_safe
@require("Datastore.Read", _path)
def snapshot_download(request, store, snapshot):
    """Download one file of a snapshot: a .blob decoded, an .img raw, a .tar as a tar stream."""
    cfg = _store(store)
    eng, error = _engine(cfg)
    if eng is None:
        raise Http404(error)
    ref = _snapshot(eng, snapshot, request.GET.get("ns", ""))
    filename = request.GET.get("file", "")
    try:
        manifest = eng.load_manifest(ref)
    except DatastoreError as e:
        return plain_error(str(e))
    if filename != "index.json.blob" and manifest.file(filename) is None:
        return plain_error(f"file: snapshot {ref} has no file {filename!r}")
    if filename == "index.json.blob":
        data = json.dumps(manifest.to_json(), indent=2).encode()
        return _attachment(HttpResponse(data, content_type="application/json"), "index.json")
    crypt, err = _key_for(cfg, eng, ref)
    if err:
        return plain_error(err)
    try:
        if filename.endswith(".blob"):
            data = eng.read_blob_file(ref, filename, crypt)
            return _attachment(HttpResponse(data, content_type="application/octet-stream"), filename[:-5])
        reader = open_archive_stream(eng, ref, filename[:-5], crypt)
    except DatastoreError as e:
        return plain_error(str(e))
    response = StreamingHttpResponse(_stream(reader), content_type=(
        "application/x-tar" if filename.endswith(".tar.didx") else "application/octet-stream"))
    response["Content-Length"] = str(reader.size)
    return _attachment(response, filename[:-5])


def _attachment(response, name):
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@require_safe
@require("Datastore.Read", _path)
def snapshot_browse(request, store, snapshot):
    """The file browser of a snapshot, driven by its catalog."""
    cfg = _store(store)
    eng, error = _engine(cfg)
    if eng is None:
        raise Http404(error)
    ns = request.GET.get("ns", "")
    ref = _snapshot(eng, snapshot, ns)
    archive = request.GET.get("archive", "")
    directory = request.GET.get("dir", ".") or "."
    ctx = _ctx(request, cfg, "content", ref=ref, ns=ns, archive=archive, dir=directory, entries=[],
               archives=[], crumbs=[])
    try:
        manifest = eng.load_manifest(ref)
        ctx["archives"] = [f["filename"][:-5] for f in manifest.files if f["filename"].endswith(".tar.didx")]
        if not archive and ctx["archives"]:
            archive = ctx["archive"] = ctx["archives"][0]
        crypt, err = _key_for(cfg, eng, ref)
        if err:
            raise DatastoreError(err)
        if archive:
            cat = read_catalog(eng, ref, crypt)
            ctx["entries"] = cat.list_dir(archive, directory)
    except DatastoreError as e:
        ctx["error"] = str(e)
        ctx["no_catalog"] = "no catalog" in str(e)
    parts = [p for p in directory.strip("/").split("/") if p and p != "."]
    ctx["crumbs"] = [{"name": p, "dir": "/".join(parts[: i + 1])} for i, p in enumerate(parts)]
    ctx["base_query"] = urlencode({"ns": ns, "archive": archive})
    return render(request, "datastores/browse.html", ctx)


@require_safe
@require("Datastore.Read", _path)
def snapshot_download_file(request, store, snapshot):
    """One regular file out of a .tar archive (via the catalog offset)."""
    cfg = _store(store)
    eng, error = _engine(cfg)
    if eng is None:
        raise Http404(error)
    ref = _snapshot(eng, snapshot, request.GET.get("ns", ""))
    archive = request.GET.get("archive", "")
    member = request.GET.get("path", "")
    if not archive.endswith(".tar") or not member:
        return plain_error("archive and path are required (a file of a .tar archive)")
    try:
        crypt, err = _key_for(cfg, eng, ref)
        if err:
            return plain_error(err)
        tmp = tempfile.TemporaryFile()
        restore_file(eng, ref, archive, member, tmp, crypt)
    except DatastoreError as e:
        return plain_error(str(e))
    tmp.seek(0)
    return FileResponse(tmp, as_attachment=True, filename=os.path.basename(member.rstrip("/")))


# -- prune & GC -------------------------------------------------------------------------------

def _prune_gc_page(request, cfg, form=None, show_dialog=False, status=200):
    return render(request, "datastores/prune_gc.html", _ctx(
        request, cfg, "prune-gc", jobs=cfg.prune_jobs.select_related("last_task").all(),
        form=form or PruneJobForm(), show_dialog=show_dialog, keep_form=KeepForm(),
        gc=ds_status.gc_status(cfg)), status=status)


@require_safe
@require("Datastore.Audit", _path)
def prune_gc(request, store):
    return _prune_gc_page(request, _store(store))


# Prune and verify jobs share their Add / Remove / Run actions.

def _job_add(request, store, form_class, model, page, label, tab):
    cfg = _store(store)
    form = form_class(request.POST, instance=model(store=cfg))
    if not form.is_valid():
        return page(request, cfg, form=form, show_dialog=True, status=400)
    job = form.save(commit=False)
    job.next_run = job.compute_next_run()
    job.save()
    messages.success(request, f"{label} '{job.job_id}' added.")
    return redirect(f"/datastore/{cfg.name}/{tab}/")


def _job_remove(request, store, id, model, label, tab):
    cfg = _store(store)
    get_object_or_404(model, store=cfg, job_id=id).delete()
    messages.success(request, f"{label} '{id}' removed.")
    return redirect(f"/datastore/{cfg.name}/{tab}/")


def _job_run(request, store, id, model):
    job = get_object_or_404(model, store=_store(store), job_id=id)
    return _to_task(request, job.launch(request.user.username))


@require_POST
@require("Datastore.Modify", _path)
def prune_job_add(request, store):
    return _job_add(request, store, PruneJobForm, PruneJob, _prune_gc_page, "Prune job", "prune-gc")


@require_POST
@require("Datastore.Modify", _path)
def prune_job_remove(request, store, id):
    return _job_remove(request, store, id, PruneJob, "Prune job", "prune-gc")


@require_POST
@require("Datastore.Prune", _path)
def prune_job_run(request, store, id):
    return _job_run(request, store, id, PruneJob)


def _simulate(cfg, data, group=None):
    """(keep options dict, rows, error) for the prune simulator."""
    form = KeepForm(data)
    if not form.is_valid():
        return form, [], None
    eng, error = _engine(cfg)
    if eng is None:
        return form, [], error
    ns = data.get("ns", "") or ""
    try:
        validate_ns(ns)
        plan = prune_plan(eng, keep_options_from(form.keep()), ns, recursive=group is None)
    except (DatastoreError, ValueError) as e:
        return form, [], str(e)
    if group:
        plan = [(r, m) for r, m in plan if f"{r.backup_type}/{r.backup_id}" == group]
    rows = [{"ref": r, "mark": m, "kept": m != "remove"} for r, m in plan]
    return form, rows, None


@require_safe
@require("Datastore.Audit", _path)
def prune_simulate(request, store):
    """The prune simulator: which existing snapshots the keep options would keep or remove (htmx)."""
    cfg = _store(store)
    group = request.GET.get("group") or None
    form, rows, error = _simulate(cfg, request.GET, group)
    ctx = {"store": cfg, "form": form, "rows": rows, "error": error, "group": group,
           "kept": sum(1 for r in rows if r["kept"]), "removed": sum(1 for r in rows if not r["kept"])}
    status = 400 if form.errors or error else 200
    return render(request, "datastores/prune_simulation.html", ctx, status=status)


@require_safe
@require("Datastore.Audit", _path)
def prune_group_dialog(request, store):
    cfg = _store(store)
    return render(request, "datastores/prune_group_dialog.html", {
        "store": cfg, "ns": request.GET.get("ns", ""), "group": request.GET.get("group", ""),
        "form": KeepForm(), "standalone": not request.htmx, "current_store": cfg.name})


@require_POST
@require("Datastore.Prune", _path)
def prune_run(request, store):
    """Prune now (the whole datastore / a namespace, or one group) with the posted keep options."""
    cfg = _store(store)
    form = KeepForm(request.POST)
    group = request.POST.get("group") or None
    ns = request.POST.get("ns", "")
    try:
        validate_ns(ns)
    except DatastoreError as e:
        form.is_valid()
        form.add_error(None, str(e))
    if not form.is_valid():
        return render(request, "datastores/prune_group_dialog.html", {
            "store": cfg, "ns": ns, "group": group or "", "form": form, "standalone": True,
            "current_store": cfg.name}, status=400)
    worker_id = f"{cfg.name}:{ns + '/' if ns else ''}{group}" if group else cfg.name
    task = start_task("datastores.tasks.prune", "prune", worker_id, request.user.username,
                      {"store": cfg.name, "ns": ns, "keep": form.keep(), "dry_run": False, "group": group})
    return _to_task(request, task)


@require_POST
@require("Datastore.Modify", _path)
def gc_start(request, store):
    cfg = _store(store)
    task = cfg.launch(request.user.username)
    return _to_task(request, task)


# -- verify jobs --------------------------------------------------------------------------------

def _verify_page(request, cfg, form=None, show_dialog=False, status=200):
    return render(request, "datastores/verify_jobs.html", _ctx(
        request, cfg, "verify", jobs=cfg.verify_jobs.select_related("last_task").all(),
        form=form or VerifyJobForm(), show_dialog=show_dialog), status=status)


@require_safe
@require("Datastore.Audit", _path)
def verify_jobs(request, store):
    return _verify_page(request, _store(store))


@require_POST
@require("Datastore.Modify", _path)
def verify_job_add(request, store):
    return _job_add(request, store, VerifyJobForm, VerifyJob, _verify_page, "Verify job", "verify-jobs")


@require_POST
@require("Datastore.Modify", _path)
def verify_job_remove(request, store, id):
    return _job_remove(request, store, id, VerifyJob, "Verify job", "verify-jobs")


@require_POST
@require("Datastore.Verify", _path)
def verify_job_run(request, store, id):
    return _job_run(request, store, id, VerifyJob)


@require_POST
@require("Datastore.Verify", _path)
def verify_all(request, store):
    cfg = _store(store)
    ignore = request.POST.get("ignore_verified") in ("true", "on", "1")
    task = start_task("datastores.tasks.verify", "verify", cfg.name, request.user.username,
                      {"store": cfg.name, "ignore_verified": ignore})
    return _to_task(request, task)


# -- options / remove ---------------------------------------------------------------------------

@require_safe
@require("Datastore.Audit", _path)
def options(request, store):
    cfg = _store(store)
    return render(request, "datastores/options.html", _ctx(request, cfg, "options",
                                                             form=DatastoreOptionsForm(instance=cfg)))


@require_POST
@require("Datastore.Modify", _path)
def options_save(request, store):
    cfg = _store(store)
    form = DatastoreOptionsForm(request.POST, instance=cfg)
    if not form.is_valid():
        return render(request, "datastores/options.html", _ctx(request, cfg, "options", form=form), status=400)
    obj = form.save(commit=False)
    obj.next_run = obj.compute_next_run()
    obj.save()
    messages.success(request, "Options saved.")
    return redirect(f"/datastore/{cfg.name}/options/")


@require_POST
@require("Datastore.Allocate", _path)
def datastore_remove(request, store):
    cfg = _store(store)
    try:
        remove_datastore(cfg)
    except FieldError as e:
        messages.error(request, e.message)
        return redirect(f"/datastore/{cfg.name}/options/")
    messages.success(request, f"Datastore '{cfg.name}' removed from the configuration. "
                              f"Its data stays on disk at {cfg.path}.")
    return redirect("/datastore/")


# -- encryption ------------------------------------------------------------------------------------

def _key_info(cfg):
    if not cfg.key_fingerprint:
        return None
    try:
        return keyfile_info(cfg.key_path)
    except DatastoreError as e:
        return {"error": str(e), "fingerprint": cfg.key_fingerprint}


def _encryption_page(request, cfg, form=None, show_dialog=False, status=200):
    return render(request, "datastores/encryption.html", _ctx(
        request, cfg, "encryption", key=_key_info(cfg), form=form or KeyForm(), show_dialog=show_dialog),
        status=status)


@require_safe
@require("Datastore.Audit", _path)
def encryption(request, store):
    return _encryption_page(request, _store(store))


@require_POST
@require("Datastore.Modify", _path)
def encryption_generate(request, store):
    cfg = _store(store)
    form = KeyForm(request.POST)
    try:
        if form.is_valid():
            kdf = form.cleaned_data["kdf"]
            fp = create_datastore_key(cfg, kdf, form.cleaned_data["passphrase"] if kdf == "scrypt" else None,
                                      form.cleaned_data["hint"])
            messages.success(request, f"Encryption key {fp} created. Download it and keep a copy offline now.")
            return redirect(f"/datastore/{cfg.name}/encryption/")
        check_no_key(cfg)  # say so first if there is one: fixing the dialog would not help
    except UserError as e:
        form.add_error(None, e.message)
    return _encryption_page(request, cfg, form=form, show_dialog=True, status=400)


@require_safe
@require("Datastore.Modify", _path)
def encryption_download(request, store):
    cfg = _store(store)
    if not cfg.has_key():
        raise Http404("this datastore has no key")
    return FileResponse(open(cfg.key_path, "rb"), as_attachment=True, filename=f"{cfg.name}-key.json",
                        content_type="application/json")


@require_safe
@require("Datastore.Modify", _path)
def encryption_paperkey(request, store):
    cfg = _store(store)
    if not cfg.has_key():
        raise Http404("this datastore has no key")
    return render(request, "datastores/paperkey.html", {"store": cfg, "paper": paper_key(cfg.key_path),
                                                        "key": _key_info(cfg)})
