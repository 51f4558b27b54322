"""What the Dashboard shows: datastore usage with Estimated Full, the task summary,
longest and running tasks, each remote's off-site state, warnings, chart data.

Estimated Full follows PBS (src/api2/status/mod.rs): a month of usage samples,
usage = used / (used + avail), at least 7 points, a least-squares fit
usage = a + b·t, full at t = (1 − a) / b; "never" when usage does not grow.
"""
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import connection
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q
from django.db.models.expressions import RawSQL
from django.urls import reverse
from django.utils import timezone

from pbsweb.models import Task, TaskMetric

log = logging.getLogger(__name__)

PERIODS = {"1": ("last 24 hours", timedelta(days=1)), "7": ("last 7 days", timedelta(days=7)),
           "30": ("last 30 days", timedelta(days=30))}
DEFAULT_PERIOD = "30"
MIN_POINTS = 7
ESTIMATE_WINDOW = timedelta(days=30)
SAMPLE_INTERVAL = timedelta(hours=1)
SAMPLE_KEEP = timedelta(days=400)
OVERDUE_HOURS = 36
MISSED_SCHEDULE = timedelta(hours=1)
WASABI_MIN_DAYS = 90
# PBS's task summary categories (ok / warning / error per category).
CATEGORIES = [
    ("Backups", ("backup",)),
    ("Prunes", ("prune", "prunejob")),
    ("Garbage collections", ("garbage_collection",)),
    ("Syncs", ("syncjob",)),
    ("Verify", ("verify", "verificationjob")),
]


# -- Estimated Full -------------------------------------------------------------

def linear_regression(xs: list[float], ys: list[float]) -> tuple[float, float] | None:
    """Least squares y = a + b·x; None when x does not vary."""
    n = len(xs)
    if n == 0 or n != len(ys):
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - b * mx, b


def estimate_full(samples) -> float | None:
    """Epoch seconds when the filesystem is full, 0 for "never", None when not enough data.

    `samples`: (epoch seconds, used, avail) tuples."""
    points = [(float(t), used / (used + avail)) for t, used, avail in samples
              if used is not None and avail is not None and used + avail > 0]
    if len(points) < MIN_POINTS:
        return None
    fit = linear_regression([p[0] for p in points], [p[1] for p in points])
    if fit is None:
        return None
    a, b = fit
    if b <= 0:
        return 0
    return (1.0 - a) / b


def _avail(sample) -> int:
    if sample.avail_bytes is not None:
        return sample.avail_bytes
    return max(0, sample.total_bytes - sample.used_bytes)


def estimated_full_text(estimate, now=None) -> str:
    if estimate is None:
        return "not enough data"
    if estimate == 0:
        return "never"
    now = now or timezone.now()
    if estimate <= now.timestamp():
        return "full"
    return timezone.localtime(datetime.fromtimestamp(estimate, tz=dt_timezone.utc)).strftime("%Y-%m-%d")


# -- usage samples (scheduler tick) --------------------------------------------------

def record_usage_samples(now=None) -> int:
    """One DatastoreUsage sample per datastore, at most once an hour (called by scheduler_tick)."""
    from datastores.models import Datastore, DatastoreUsage
    from datastores.status import usage
    now = now or timezone.now()
    made = 0
    for store in Datastore.objects.all():
        last = DatastoreUsage.objects.filter(store=store).order_by("-time").values_list("time", flat=True).first()
        if last is not None and now - last < SAMPLE_INTERVAL - timedelta(seconds=30):
            continue
        u = usage(store.path)
        if u["total"] is None:
            continue
        DatastoreUsage.objects.create(store=store, time=now, used_bytes=u["used"], total_bytes=u["total"],
                                      avail_bytes=u["avail"])
        made += 1
    DatastoreUsage.objects.filter(time__lt=now - SAMPLE_KEEP).delete()
    return made


def safe_record_usage_samples() -> None:
    try:
        record_usage_samples()
    except Exception:  # the tick must go on starting jobs
        log.exception("could not record datastore usage samples")


# -- datastores ----------------------------------------------------------------

def datastore_rows(now=None) -> list[dict]:
    from datastores.models import Datastore, DatastoreUsage
    from datastores.status import read_gc_file, usage
    now = now or timezone.now()
    rows = []
    for store in Datastore.objects.all():
        u = usage(store.path)
        samples = list(DatastoreUsage.objects.filter(store=store, time__gte=now - ESTIMATE_WINDOW)
                       .order_by("time"))
        estimate = estimate_full([(s.time.timestamp(), s.used_bytes, _avail(s)) for s in samples])
        gc = read_gc_file(store.path)
        own = gc.get("disk-bytes", gc.get("disk_bytes"))
        percent = u["percent"]
        rows.append({
            "name": store.name, "path": store.path, "total": u["total"], "used": u["used"], "avail": u["avail"],
            "percent": percent, "own_bytes": own,
            "own_percent": round(100 * own / u["total"], 1) if own and u["total"] else None,
            "estimate": estimate, "estimate_text": estimated_full_text(estimate, now),
            "estimate_sort": estimate if estimate else (9e12 if estimate == 0 else 9.5e12),
            "level": "error" if (percent or 0) >= 90 else "warning" if (percent or 0) >= 80 else "ok",
            "samples": len(samples),
        })
    return rows


def usage_chart(now=None, days: int = 30) -> dict:
    """Series for the usage-over-time chart: hourly samples, used % per datastore."""
    from datastores.models import DatastoreUsage
    now = now or timezone.now()
    series: dict[str, dict[int, float]] = {}
    for s in (DatastoreUsage.objects.filter(time__gte=now - timedelta(days=days)).select_related("store")
              .order_by("time")):
        total = s.used_bytes + _avail(s)
        if total <= 0:
            continue
        t = int(s.time.timestamp()) // 3600 * 3600
        series.setdefault(s.store.name, {})[t] = round(100 * s.used_bytes / total, 2)
    times = sorted({t for points in series.values() for t in points})
    names = sorted(series)
    return {"x": times, "series": [{"label": n, "values": [series[n].get(t) for t in times]} for n in names],
            "unit": "%"}


# -- tasks -------------------------------------------------------------------------

def period_choice(value) -> str:
    return value if value in PERIODS else DEFAULT_PERIOD


def task_filter_url(worker_type: str = "", state: str = "") -> str:
    """The task list filtered by type and state (the list calls errors `errors`)."""
    from urllib.parse import urlencode
    params = {}
    if worker_type:
        params["type"] = worker_type
    if state:
        params["state"] = "errors" if state == Task.ERROR else state
    return reverse("task-list") + ("?" + urlencode(params) if params else "")


def task_summary(period: str, now=None) -> dict:
    now = now or timezone.now()
    label, delta = PERIODS[period_choice(period)]
    # Counted from the indexes (worker_type, starttime) and (state, starttime) alone: totals per
    # type, then the few tasks that are not OK; OK = total - the rest. Fast with 100k tasks.
    since = now - delta
    by_type: dict[str, dict] = {}
    for worker_type in Task.objects.order_by().values_list("worker_type", flat=True).distinct():
        total = Task.objects.filter(worker_type=worker_type, starttime__gte=since).count()
        if total:
            by_type[worker_type] = {"ok": total, "warning": 0, "error": 0, "running": 0}
    others = (Task.objects.filter(starttime__gte=since, state__in=[Task.WARNING, Task.ERROR, Task.QUEUED,
                                                                   Task.RUNNING])
              .order_by().values_list("worker_type", "state").annotate(n=Count("*")))
    for worker_type, state, n in others:
        r = by_type.get(worker_type)
        if r is None:
            continue
        r["running" if state in (Task.QUEUED, Task.RUNNING) else state] += n
        r["ok"] -= n
    from pbsweb.worker import describe
    out = []
    for worker_type in sorted(by_type):
        r = by_type[worker_type]
        out.append({
            "type": worker_type, "label": describe(worker_type, "").strip() or worker_type,
            "ok": r["ok"], "warning": r["warning"], "error": r["error"], "running": r["running"],
            "total": r["ok"] + r["warning"] + r["error"] + r["running"],
            "url": task_filter_url(worker_type),
            "ok_url": task_filter_url(worker_type, Task.OK),
            "warning_url": task_filter_url(worker_type, Task.WARNING),
            "error_url": task_filter_url(worker_type, Task.ERROR),
            "running_url": task_filter_url(worker_type, "running"),
        })
    totals = {k: sum(r[k] for r in out) for k in ("ok", "warning", "error", "running", "total")}
    return {"period": period_choice(period), "label": label, "rows": out, "totals": totals,
            "periods": [(k, v[0]) for k, v in PERIODS.items()]}


def longest_tasks(period: str, now=None, limit: int = 10) -> list[Task]:
    now = now or timezone.now()
    delta = PERIODS[period_choice(period)][1]
    tasks = Task.objects.filter(starttime__gte=now - delta, endtime__isnull=False)
    if connection.vendor == "sqlite":
        # Django's duration subtraction calls a Python function per row on SQLite; julianday is native.
        tasks = tasks.annotate(span=RawSQL("julianday(endtime) - julianday(starttime)", ()))
    else:
        tasks = tasks.annotate(span=ExpressionWrapper(F("endtime") - F("starttime"), output_field=DurationField()))
    out = list(tasks.order_by("-span")[:limit])
    for t in out:
        t.took = t.endtime - t.starttime
    return out


def running_tasks(limit: int = 20) -> list[Task]:
    return list(Task.objects.filter(state__in=[Task.QUEUED, Task.RUNNING]).order_by("-starttime")[:limit])


# -- remotes ----------------------------------------------------------------------

def drill_status(remote):
    """The last restore drill of a remote (syncjobs.drills), or None when never drill-tested."""
    try:
        from syncjobs.drills import drill_status as _drill_status
    except ImportError:
        return None
    try:
        return _drill_status(remote)
    except Exception:
        log.warning("drill status of remote %s failed", remote.remote_id, exc_info=True)
        return None


def _drill_view(status) -> dict | None:
    """Whatever drill_status returns (a dict, an object, a Task) as {time, ok, text, upid}."""
    if not status:
        return None

    def get(*names):
        for n in names:
            v = status.get(n) if isinstance(status, dict) else getattr(status, n, None)
            if v not in (None, ""):
                return v
        return None
    when = get("time", "last_time", "endtime", "last_run", "last_drill", "starttime", "when")
    if isinstance(when, (int, float)):
        when = datetime.fromtimestamp(when, tz=dt_timezone.utc)
    state = get("state", "status", "result", "ok")
    ok = state in (True, "ok", "OK", Task.OK)
    if state in (None, "") and get("ok") is None:
        ok = None
    upid = get("upid", "task_upid")
    if upid is None and isinstance(get("task"), Task):
        upid = get("task").upid
    text = get("text", "message", "summary", "status")
    if when is None and not upid and state in (None, "", "never", False) and not text:
        return None
    last_ok = get("last_ok_time")
    if last_ok is None and ok:
        last_ok = when
    return {"time": when, "ok": ok, "text": str(text or "") if not isinstance(text, bool) else "", "upid": upid,
            "last_ok_time": last_ok, "message": str(get("message") or "")}


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


def _job_of_worker_id(worker_id: str) -> str:
    return worker_id.rsplit(":", 1)[-1]


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
    from django.db.models import Max
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
    from remotes.models import Remote
    from syncjobs.models import SyncJob
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
            state.last_sync_job = _job_of_worker_id(state.last_sync.worker_id)
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
        state.drill = _drill_view(drill_status(remote))
        try:
            from remotes.usage import cost_view, daily_usage
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
    from syncjobs.models import SyncJob
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
                                f"{_ago(late)} ago - is the Celery beat/worker running?"})
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
                            "text": f"Remote '{remote.remote_id}' has no successful sync for {_ago(age)} "
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
        min_days = max(remote.min_storage_days or 0, WASABI_MIN_DAYS if remote.provider == "wasabi" else 0)
        if min_days >= WASABI_MIN_DAYS or remote.provider == "wasabi":
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


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


# -- sync charts --------------------------------------------------------------

SUMMARY_RE = re.compile(r"Summary: (?:uploaded|downloaded) (?:\d+ objects \(\d+ chunks\), )?([\d.]+) (B|KiB|MiB|GiB|TiB)")
UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3, "TiB": 1024 ** 4}


def _bytes_from_log(task: Task) -> float | None:
    """The bytes of a sync run from its log's Summary line (runs from before TaskMetric)."""
    try:
        with open(task.log_path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 8192))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    if "Summary: uploaded nothing" in tail or "Summary: downloaded nothing" in tail:
        return 0.0
    m = SUMMARY_RE.search(tail)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def sync_chart(limit: int = 60) -> dict:
    """Bytes per sync run and run duration, oldest first (TaskMetric `bytes`, else the log)."""
    from syncjobs.models import SyncJob
    tasks = list(Task.objects.filter(worker_type="syncjob", endtime__isnull=False)
                 .order_by("-starttime")[:limit])[::-1]
    metrics = {m.task_id: m.value for m in TaskMetric.objects.filter(task__in=tasks, name="bytes")}
    last = {j.last_task_id: j.last_bytes for j in SyncJob.objects.filter(last_task__in=tasks)}
    x, up, took, labels = [], [], [], []
    for t in tasks:
        value = metrics.get(t.pk)
        if value is None and t.pk in last and t.state != Task.ERROR:
            value = last[t.pk]
        if value is None:
            value = _bytes_from_log(t)
        x.append(int(t.starttime.timestamp()))
        up.append(value)
        took.append(round((t.endtime - t.starttime).total_seconds(), 1))
        labels.append(_job_of_worker_id(t.worker_id))
    return {"x": x, "bytes": up, "duration": took, "jobs": labels}
