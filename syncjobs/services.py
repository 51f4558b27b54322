"""The one place a sync job or a restore drill is created, changed or removed.

The dialogs, the JSON API and the `sync-job` / `drill` commands build the form from their
input and call `save_sync_job` / `save_drill`, which validate it (UserError naming the
field in the API/CLI vocabulary, the errors also stay on the form for the dialog) and check
the privileges the RESULTING job needs (PermissionDenied naming the privilege) before
anything is saved. An edit is checked exactly as a create: moving a job to another prefix,
remote, store or direction, or turning on force or remove-vanished, needs what a new job
with those values would need.
"""
from django.core.exceptions import PermissionDenied

from pbsweb.access import has_privilege
from pbsweb.errors import UserError, field_errors
from syncjobs.forms import DrillJobForm, SyncJobForm
from syncjobs.models import JOB_PRIV, DrillJob, SyncJob

DRILL_PRIVS = ("Remote.Modify", "Remote.Read")   # set up a drill / read the bucket it checks


def _store_path(store) -> str:
    return f"/datastore/{store}" if isinstance(store, str) and store else "/"


def check_privileges(user, needs) -> None:
    """PermissionDenied naming the first (privilege, path) of `needs` the user lacks."""
    for priv, path in needs:
        if not has_privilege(user, priv, path):
            raise PermissionDenied(f"permission check failed: {priv} on {path}")


def job_privileges(job: SyncJob) -> list[tuple[str, str]]:
    """What setting up `job` needs, as PBS's check_sync_job_modify_access: Datastore.Modify on
    the local store (its jobs are its configuration); on the remote, Remote.DatastoreBackup
    to push to it or Remote.Read to pull from it. Deleting what vanished needs the prune
    privilege where the deletions happen: Remote.DatastorePrune on the remote for a push,
    Datastore.Prune on the store for a pull. Taking over a prefix another datastore owns
    (force) changes the owner of what is there: Remote.DatastoreModify."""
    local, remote = f"/datastore/{job.store.name}", f"/remote/{job.remote.remote_id}"
    needs = [(JOB_PRIV, local)]
    if job.direction == "pull":
        needs.append(("Remote.Read", remote))
        if job.remove_vanished:
            needs.append(("Datastore.Prune", local))
    else:
        needs.append(("Remote.DatastoreBackup", remote))
        if job.remove_vanished or job.remote_keep is not None:  # own retention prunes the bucket too
            needs.append(("Remote.DatastorePrune", remote))
        if job.force:
            needs.append(("Remote.DatastoreModify", remote))
    return needs


def check_job_privileges(user, job: SyncJob) -> None:
    check_privileges(user, job_privileges(job))


def drill_privileges(drill: DrillJob) -> list[tuple[str, str]]:
    return [(priv, f"/remote/{drill.remote.remote_id}") for priv in DRILL_PRIVS]


def check_drill_privileges(user, drill: DrillJob) -> None:
    check_privileges(user, drill_privileges(drill))


def form_error(form) -> UserError:
    """The form's errors as one UserError, fields named as the API and the CLI name them."""
    return field_errors({form.CLI_NAMES.get(name, name): errors[0] for name, errors in form.errors.items()})


def _update(user, form, base_needs, check_result):
    """Shared by create and edit: the user may touch what exists (`base_needs`), the values are
    valid, the result passes `check_result`; only then it is saved."""
    check_privileges(user, base_needs)
    if not form.is_valid():
        raise form_error(form)
    obj = form.apply()
    check_result(user, obj)
    obj.next_run = obj.compute_next_run()
    obj.save()
    return obj


def save_sync_job(user, form: SyncJobForm) -> SyncJob:
    """Create (form without instance) or change a sync job."""
    job = form.instance
    store = job.store.name if job is not None else form.data.get("store")
    return _update(user, form, [(JOB_PRIV, _store_path(store))], check_job_privileges)


def remove_sync_job(user, job: SyncJob) -> None:
    check_privileges(user, [(JOB_PRIV, job.acl_path)])
    job.delete()


def save_drill(user, form: DrillJobForm) -> DrillJob:
    """Create (form without instance) or change a restore drill."""
    drill = form.instance
    return _update(user, form, drill_privileges(drill) if drill is not None else [], check_drill_privileges)


def remove_drill(user, drill: DrillJob) -> None:
    check_privileges(user, [("Remote.Modify", drill.acl_path)])
    drill.delete()
