"""The datastores' dashboard cards: usage with PBS's Estimated Full, and usage history.

Estimated Full follows PBS (src/api2/status/mod.rs): a month of usage samples,
usage = used / (used + avail), at least 7 points, a least-squares fit
usage = a + b·t, full at t = (1 − a) / b; "never" when usage does not grow.
The samples are taken by a scheduler tick job, at most one an hour.
"""
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.utils import timezone

from datastores.models import Datastore, DatastoreUsage
from datastores.status import read_gc_file, usage
from pbsweb.access import has_privilege
from pbsweb.registry import DashboardPanel, registry

MIN_POINTS = 7
ESTIMATE_WINDOW = timedelta(days=30)
SAMPLE_INTERVAL = timedelta(hours=1)
SAMPLE_KEEP = timedelta(days=400)


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
    """One DatastoreUsage sample per datastore, at most once an hour (a scheduler tick job)."""
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


# -- datastores ----------------------------------------------------------------

def datastore_rows(now=None) -> list[dict]:
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


def register() -> None:
    registry.tick("datastore usage samples", record_usage_samples)
    registry.panel(DashboardPanel(
        "dash-datastores", "Datastore Usage", "dashboard/datastores.html", order=10, wide=True,
        context=lambda request, now, shared: {"datastores": datastore_rows(now)}))
    registry.panel(DashboardPanel(
        "dash-usage-chart", "Datastore Usage History (30 days)", "dashboard/usage_chart.html", order=60,
        context=lambda request, now, shared: {"usage_chart": usage_chart(now)}))
    registry.hint(_getting_started, order=10)  # a datastore first, then a remote, then a sync job
    registry.nav(_navigation)


def _navigation(request) -> dict:
    """The datastores this user may see, for the navigation tree (as PBS's)."""
    return {"nav_datastores": [
        name for name in Datastore.objects.order_by("name").values_list("name", flat=True)
        if has_privilege(request.user, "Datastore.Audit", f"/datastore/{name}")
        or has_privilege(request.user, "Datastore.Backup", f"/datastore/{name}")]}


def _getting_started(request):
    if Datastore.objects.exists():
        return None
    return {"title": "Getting started:", "link": "/datastore/add/", "link_text": "Add a datastore",
            "text": "to hold your backups, then add a remote and a sync job to keep a copy off-site."}
