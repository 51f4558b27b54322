"""The sync jobs' dashboard cards and warnings: each remote's off-site state (last
successful sync, lag behind local, last verified restore, projected cost), failed or
overdue syncs, missed schedules, remotes never drill-tested, retention shorter than a
provider's minimum storage days, and the bytes-per-sync-run chart."""
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Max, Q
from django.urls import reverse
from django.utils import timezone

from datastores.models import Datastore
from pbsweb.dashboard import ago
from pbsweb.models import Task
from pbsweb.registry import DashboardPanel, registry
from remotes.models import Remote
from remotes.usage import caps_reached, cost_view, daily_usage
from syncjobs.drills import drill_status
from syncjobs.models import SyncJob

log = logging.getLogger(__name__)

OVERDUE_HOURS = 36
MISSED_SCHEDULE = timedelta(hours=1)


def _drill_view(remote) -> dict | None:
    """The remote's last restore drill as the Off-site Copies card shows it, None if never drilled."""
    try:
        status = drill_status(remote)
    except Exception:
        log.warning("drill status of remote %s failed", remote.remote_id, exc_info=True)
        return None
    return dict(status, upid=status["task_upid"]) if status else None


@dataclass
class RemoteState:
    remote: object
    jobs: list = field(default_factory=list)
    last_sync: Task | None = None
    last_sync_job: str = ""
    lag: timedelta | None = None
    lag_text: str = ""
    drill: dict | None = None
    monthly_cost: str = ""


def _newest_local(store, ns: str, cache: dict) -> list[int]:
    key = (store.pk, ns)
    if key not in cache:
        try:
            refs = store.engine().list_snapshots(ns)
            cache[key] = sorted(r.time for r in refs if r.finished)
        except Exception:
            cache[key] = []
    return cache[key]


def last_good_syncs(worker_ids) -> dict[str, Task]:
    """The newest OK (or warnings) sync task of each worker id, in one grouped query."""
    worker_ids = list(set(worker_ids))
    if not worker_ids:
        return {}
    good = [Task.OK, Task.WARNING]
    newest = (Task.objects.filter(worker_type="syncjob", worker_id__in=worker_ids, state__in=good)
              .order_by().values_list("worker_id").annotate(last=Max("starttime")))
    q = None
    for worker_id, last in newest:
        cond = Q(worker_id=worker_id, starttime=last)
        q = cond if q is None else q | cond
    if q is None:
        return {}
    out = {}
    for task in Task.objects.filter(q, worker_type="syncjob", state__in=good).order_by("starttime"):
        out[task.worker_id] = task
    return out


def remote_states(now=None) -> list[RemoteState]:
    now = now or timezone.now()
    snapshot_cache: dict = {}
    jobs_by_remote: dict[int, list] = {}
    for job in SyncJob.objects.select_related("store", "remote", "last_task"):
        jobs_by_remote.setdefault(job.remote_id, []).append(job)
    # A job whose last run went well needs no search; only the others are looked up (one query).
    last_good = {j.worker_id: j.last_task for jobs in jobs_by_remote.values() for j in jobs
                 if j.last_task is not None and j.last_task.state in (Task.OK, Task.WARNING)
                 and j.last_task.worker_id == j.worker_id}
    last_good.update(last_good_syncs(j.worker_id for jobs in jobs_by_remote.values() for j in jobs
                                     if j.worker_id not in last_good))
    out = []
    for remote in Remote.objects.all():
        state = RemoteState(remote=remote)
        state.jobs = jobs_by_remote.get(remote.pk, [])
        synced = [last_good[j.worker_id] for j in state.jobs if j.worker_id in last_good]
        state.last_sync = max(synced, key=lambda t: t.starttime) if synced else None
        if state.last_sync:
            state.last_sync_job = state.last_sync.job
        # Lag: the newest local snapshot against the newest one the last good sync could have taken.
        lags, never = [], False
        for job in state.jobs:
            if job.direction != "push":
                continue
            times = _newest_local(job.store, job.ns, snapshot_cache)
            if not times:
                continue
            good = last_good.get(job.worker_id)
            newest = times[-1]
            taken = [t for t in times if t <= good.starttime.timestamp()] if good else []
            if not taken:
                never = True
                continue
            lags.append(newest - taken[-1])
        if never:
            state.lag_text = "never synced"
        elif lags:
            state.lag = timedelta(seconds=max(lags))
            state.lag_text = "up to date" if not max(lags) else ""
        state.drill = _drill_view(remote)
        try:
            state.monthly_cost = cost_view(remote, daily_usage(remote))["projection"]["total"]
        except Exception:
            log.warning("cost projection of remote %s failed", remote.remote_id, exc_info=True)
            state.monthly_cost = "unknown"
        out.append(state)
    return out


# -- warnings --------------------------------------------------------------------

def retention_days(keep: dict) -> float | None:
    """About how many days a prune job's keep options keep; None = everything (no keep option).

    keep-last alone keeps an unknown span (as many backups as it says), counted as 0."""
    keep = {k: v for k, v in keep.items() if v}
    if not keep:
        return None
    return max(keep.get("keep_hourly", 0) / 24, keep.get("keep_daily", 0), keep.get("keep_weekly", 0) * 7,
               keep.get("keep_monthly", 0) * 30, keep.get("keep_yearly", 0) * 365)


def overdue_hours() -> float:
    return float(getattr(settings, "PBSWEB_SYNC_OVERDUE_HOURS", OVERDUE_HOURS))


def warnings(states: list[RemoteState] | None = None, now=None) -> list[dict]:
    """Each warning: level, text, and a link to where to fix it."""
    now = now or timezone.now()
    states = remote_states(now) if states is None else states
    out = []
    for job in SyncJob.objects.select_related("last_task", "remote", "store"):
        link = reverse("datastore-syncjobs", kwargs={"store": job.store.name})
        task = job.last_task
        if task is not None and task.state == Task.ERROR:
            out.append({"level": "error", "kind": "sync-failed", "link": task.url,
                        "text": f"Sync job '{job.job_id}' failed on its last run: {task.status}"})
        if job.enabled and job.schedule and job.next_run and job.next_run < now - MISSED_SCHEDULE:
            late = now - job.next_run
            out.append({"level": "warning", "kind": "schedule-missed", "link": link,
                        "text": f"Sync job '{job.job_id}' missed its schedule ({job.schedule}): due "
                                f"{ago(late)} ago - is the Celery beat/worker running?"})
    limit = overdue_hours()
    for st in states:
        remote = st.remote
        rlink = reverse("remote-detail", kwargs={"remote": remote.remote_id})
        push_jobs = [j for j in st.jobs if j.direction == "push"]
        if push_jobs:
            if st.last_sync is None:
                oldest = min(j.last_task.starttime if j.last_task else now for j in push_jobs)
                if now - oldest > timedelta(hours=limit) or any(j.last_task for j in push_jobs):
                    out.append({"level": "warning", "kind": "remote-overdue", "link": rlink,
                                "text": f"Remote '{remote.remote_id}' has never been synced successfully."})
            elif now - (st.last_sync.endtime or st.last_sync.starttime) > timedelta(hours=limit):
                age = now - (st.last_sync.endtime or st.last_sync.starttime)
                out.append({"level": "warning", "kind": "remote-overdue", "link": rlink,
                            "text": f"Remote '{remote.remote_id}' has no successful sync for {ago(age)} "
                                    f"(more than {limit:g} h)."})
        if st.drill is None:
            out.append({"level": "warning", "kind": "never-drilled", "link": rlink,
                        "text": f"Remote '{remote.remote_id}' was never drill-tested: nobody has proven "
                                f"that its backups restore."})
        elif st.drill["ok"] is False:
            since = (f"; last verified restore {timezone.localtime(st.drill['last_ok_time']):%Y-%m-%d %H:%M}"
                     if st.drill.get("last_ok_time") else "; it has never passed one")
            out.append({"level": "error", "kind": "drill-failed", "link": rlink,
                        "text": f"The last restore drill of remote '{remote.remote_id}' failed"
                                f"{': ' + st.drill['message'] if st.drill.get('message') else ''}{since}."})
        out += [{"level": "warning", "kind": "remote-cap", "link": rlink, "text": text}
                for text in caps_reached(remote)]
        min_days = remote.effective_min_storage_days
        if min_days:
            seen = set()
            for job in push_jobs:
                for pj in job.store.prune_jobs.filter(enabled=True):
                    if pj.pk in seen:
                        continue
                    seen.add(pj.pk)
                    days = retention_days(pj.keep_dict())
                    if days is not None and days < min_days:
                        kept = "only the last backups (keep-last)" if not days else f"about {days:g} days"
                        out.append({"level": "warning", "kind": "short-retention",
                                    "link": reverse("datastores:prune-gc", kwargs={"store": job.store.name}),
                                    "text": f"Remote '{remote.remote_id}' bills {min_days} days minimum per "
                                            f"object, but prune job '{pj.job_id}' on datastore "
                                            f"'{job.store.name}' keeps {kept}: snapshots deleted earlier "
                                            f"are billed as if kept {min_days} days."})
    return out



# -- sync charts --------------------------------------------------------------

def sync_chart(limit: int = 60) -> dict:
    """Bytes per sync run (the task's result) and run duration, oldest first."""
    tasks = list(Task.objects.filter(worker_type="syncjob", endtime__isnull=False)
                 .order_by("-starttime")[:limit])[::-1]
    x, up, took, labels = [], [], [], []
    for t in tasks:
        value = t.result.get("bytes")
        x.append(int(t.starttime.timestamp()))
        up.append(value)
        took.append(round((t.endtime - t.starttime).total_seconds(), 1))
        labels.append(t.job)
    return {"x": x, "bytes": up, "duration": took, "jobs": labels}


def _shared_states(now, shared: dict) -> list[RemoteState]:
    """The remotes' states, computed once per page for the card and the warnings."""
    if "remote_states" not in shared:
        shared["remote_states"] = remote_states(now)
    return shared["remote_states"]


def _no_sync_job_hint(request):
    if SyncJob.objects.exists():
        return None
    store = Datastore.objects.order_by("name").first()
    if store is None or not Remote.objects.exists():
        return None  # the datastores' and remotes' hints come first
    return {"title": "No sync job yet:", "link": f"/datastore/{store.name}/sync-jobs/",
            "link_text": "Create a sync job", "text": f"to copy datastore '{store.name}' to a remote on a schedule."}


def register() -> None:
    registry.panel(DashboardPanel(
        "dash-remotes", "Off-site Copies", "dashboard/remotes.html", order=20, wide=True,
        context=lambda request, now, shared: {"remotes": _shared_states(now, shared),
                                              "overdue_hours": overdue_hours()}))
    registry.panel(DashboardPanel(
        "dash-sync-chart", "Sync Runs: bytes uploaded and duration", "dashboard/sync_chart.html", order=70,
        wide=True, context=lambda request, now, shared: {"sync_chart": sync_chart()}))
    registry.warnings(lambda now, shared: warnings(_shared_states(now, shared), now))
    registry.hint(_no_sync_job_hint, order=30)
