"""The detail page's request chart and cost view, from RemoteUsage rows and the engine's price list."""
import calendar
import datetime

from django.db.models import Sum
from django.utils import timezone

from remotes.engine import cost
from remotes.engine.client import format_bytes
from pbsweb.paths import data_file
from remotes.engine.limits import CAP_CLASSES, NANO, SPEND, CapGuard, CapLedger
from remotes.models import USAGE_KINDS, RemoteUsage

CHART_DAYS = 30
CHART_W, CHART_H, CHART_TOP, CHART_LEFT, CHART_BOTTOM = 640, 170, 10, 44, 22
CLASS_COLORS = {"A": "#3892d4", "B": "#21bf4b", "C": "#f39c12"}


def daily_usage(remote, days: int = CHART_DAYS) -> list[dict]:
    """One dict per day (oldest first) with the request counts per kind and bytes."""
    today = timezone.localdate()
    first = today - datetime.timedelta(days=days - 1)
    rows = (RemoteUsage.objects.filter(remote=remote, day__gte=first).values("day")
            .annotate(**{k: Sum(k) for k in (*USAGE_KINDS, "bytes_up", "bytes_down")}))
    by_day = {r["day"]: r for r in rows}
    out = []
    for i in range(days):
        day = first + datetime.timedelta(days=i)
        r = by_day.get(day, {})
        entry = {"day": day, **{k: int(r.get(k) or 0) for k in (*USAGE_KINDS, "bytes_up", "bytes_down")}}
        entry["requests"] = sum(entry[k] for k in USAGE_KINDS)
        for cls, kinds in CAP_CLASSES.items():
            entry["class_" + cls] = sum(entry[k.lower()] for k in kinds)
        out.append(entry)
    return out


def _nice_max(value: int) -> int:
    if value <= 5:
        return 5
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return int(step * magnitude)
    return value


def chart(days: list[dict]) -> dict:
    """Stacked SVG bars of requests per day by class (limits.CAP_CLASSES), positions computed here."""
    top = _nice_max(max((d["requests"] for d in days), default=0))
    plot_h = CHART_H - CHART_TOP - CHART_BOTTOM
    plot_w = CHART_W - CHART_LEFT - 6
    slot = plot_w / max(1, len(days))
    bars = []
    for i, d in enumerate(days):
        x = CHART_LEFT + i * slot + 1
        y = CHART_TOP + plot_h
        segments = []
        for cls in CAP_CLASSES:
            if not d["class_" + cls]:
                continue
            h = d["class_" + cls] / top * plot_h
            y -= h
            segments.append({"x": round(x, 1), "y": round(y, 1), "w": round(slot - 2, 1), "h": round(h, 1),
                             "color": CLASS_COLORS[cls]})
        title = (f"{d['day']:%Y-%m-%d}: " + ", ".join(f"{d[k]} {k.upper()}" for k in USAGE_KINDS)
                 + "; " + ", ".join(f"class {c} {d['class_' + c]}" for c in CAP_CLASSES)
                 + f"; {cost_bytes(d['bytes_up'])} up, {cost_bytes(d['bytes_down'])} down")
        label = f"{d['day']:%m-%d}" if i % 5 == 0 or i == len(days) - 1 else ""
        bars.append({"segments": segments, "title": title, "label": label,
                     "label_x": round(x + (slot - 2) / 2, 1), "x": round(x, 1), "w": round(slot - 2, 1)})
    grid = [{"y": round(CHART_TOP + plot_h - f * plot_h, 1), "value": int(top * f)} for f in (0, 0.5, 1)]
    return {"w": CHART_W, "h": CHART_H, "bars": bars, "grid": grid, "left": CHART_LEFT,
            "right": CHART_W - 6, "base_y": CHART_TOP + plot_h, "label_y": CHART_H - 6,
            "legend": [(f"Class {c} ({'/'.join(CAP_CLASSES[c])})", color) for c, color in CLASS_COLORS.items()],
            "max": top}


def cost_bytes(n: int) -> str:
    return format_bytes(n)


def _requests_of(row: dict) -> dict:
    return {k.upper(): int(row.get(k) or 0) for k in USAGE_KINDS}


def cost_view(remote, days: list[dict]) -> dict:
    provider = remote.provider or "other"
    pricing = remote.pricing()
    table = {row["provider"]: row for row in cost.cost_per_tb_table(pricing)}
    prices = table.get(provider, table["other"])
    totals = {k: sum(d[k] for d in days) for k in (*USAGE_KINDS, "bytes_up", "bytes_down")}
    requests = {k.upper(): totals[k] for k in USAGE_KINDS}
    stored = remote.stored_bytes or 0
    month = cost.monthly_cost(provider, stored, requests, totals["bytes_down"], pricing=pricing)
    active = [d for d in days if d["requests"] or d["bytes_up"] or d["bytes_down"]]
    span = (days[-1]["day"] - active[0]["day"]).days + 1 if active else 1
    daily = {k: v / span for k, v in requests.items()}
    projection = cost.projected_monthly_cost(provider, stored, daily, totals["bytes_down"] / span, pricing=pricing)
    min_days = max(prices["min_storage_days"] or 0, remote.min_storage_days or 0)
    early = []
    if prices["min_storage_days"]:
        size = stored or cost.TB
        for age in (0, 30, 60):
            early.append({"age": age, "bytes": size, "charge": cost.format_usd(
                cost.early_deletion_charge(provider, [(size, age)], pricing=pricing))})

    def usd(value):
        return cost.format_usd(value)

    return {
        "provider_label": prices["label"], "custom": remote.price_override() is not None,
        "storage_price": usd(prices["storage_per_tb_month"]) if prices["storage_per_tb_month"] is not None else "unknown",
        "egress_price": prices["egress"], "request_prices": prices["requests"], "min_days": min_days,
        "provider_min_days": prices["min_storage_days"] or 0,
        "totals": totals, "requests_total": sum(requests.values()), "stored": stored,
        "stored_tb": f"{stored / cost.TB:.3f}".rstrip("0").rstrip("."),
        "month": {"storage": usd(month.storage), "requests": usd(month.requests), "egress": usd(month.egress),
                  "total": usd(month.total), "notes": month.notes},
        "projection": {"storage": usd(projection.storage), "requests": usd(projection.requests),
                       "egress": usd(projection.egress), "total": usd(projection.total),
                       "notes": projection.notes, "span": span},
        "early": early, "early_is_sample": not stored,
        "pricing_date": pricing.get("date", ""),
    }


def this_month(remote, today: datetime.date | None = None) -> dict:
    """The month on the remote's page: the cost so far, the forecast for the whole month,
    the budget used, the egress and what the last drill cost, at the remote's prices."""
    today = today or timezone.localdate()
    pricing = remote.pricing()
    provider = remote.provider or "other"
    days_in_month = calendar.monthrange(today.year, today.month)[1]
    requests, egress = month_usage(remote, today)
    stored = remote.stored_bytes or 0
    so_far = cost.monthly_cost(provider, stored, requests, egress, pricing=pricing)
    scale = days_in_month / today.day
    forecast = cost.monthly_cost(provider, stored, {k: round(v * scale) for k, v in requests.items()},
                                 egress * scale, pricing=pricing)
    out = {"so_far": cost.format_usd(so_far.total), "forecast": cost.format_usd(forecast.total),
           "so_far_value": so_far.total, "forecast_value": forecast.total,
           "days": today.day, "days_in_month": days_in_month, "month": f"{today:%B %Y}",
           "requests": {cls: sum(requests[k] for k in kinds) for cls, kinds in CAP_CLASSES.items()},
           "egress_bytes": egress, "egress_cost": cost.format_usd(so_far.egress),
           "forecast_egress_cost": cost.format_usd(forecast.egress),
           "pricing_date": pricing.get("date") or "unknown", "budget": None, "last_drill": last_drill_cost(remote)}
    if remote.monthly_budget is not None:
        budget = float(remote.monthly_budget)
        out["budget"] = {"amount": f"${budget:,.2f}", "used": _share(so_far.total, budget),
                         "forecast": _share(forecast.total, budget),
                         "over": forecast.total is not None and forecast.total > budget}
    return out


def _share(value: float | None, budget: float) -> str:
    if value is None:
        return "unknown"
    if not budget:
        return "—" if not value else "over"
    return f"{value / budget:.0%}"


def last_drill_cost(remote) -> dict | None:
    """The newest drill's requests and bytes (its task's usage row) at the remote's list prices."""
    run = remote.drill_runs.first()
    if run is None:
        return None
    row = RemoteUsage.objects.filter(remote=remote, task_upid=run.task_upid).values(
        *USAGE_KINDS, "bytes_down").first() if run.task_upid else None
    requests = _requests_of(row or {})
    down = int((row or {}).get("bytes_down") or run.bytes_downloaded or 0)
    pricing = remote.pricing()
    provider = remote.provider or "other"
    req = cost.run_cost(provider, requests, 0, remote.stored_bytes or 0, pricing=pricing).requests
    egress_price = cost.provider_prices(provider, pricing).get("egress_per_tb")
    egress = None if egress_price is None else down / cost.TB * egress_price
    total = None if req is None or egress is None else req + egress
    return {"time": run.time, "ok": run.ok, "requests": sum(requests.values()), "gets": requests["GET"],
            "bytes": down, "requests_cost": cost.format_usd(req), "egress_cost": cost.format_usd(egress),
            "total": cost.format_usd(total)}


def detail_context(remote) -> dict:
    days = daily_usage(remote)
    return {"chart": chart(days), "cost": cost_view(remote, days), "month": this_month(remote),
            "has_usage": any(d["requests"] for d in days)}


# -- caps and budget ------------------------------------------------------------------------

def ledger_path(remote):
    return data_file("remote-caps", "remote_id", remote.remote_id, ".sqlite")


def cap_ledger(remote) -> CapLedger:
    """The remote's daily request counts and month's spending, shared by every run and drill
    on it (limits.CapLedger)."""
    path = ledger_path(remote)
    path.parent.mkdir(parents=True, exist_ok=True)
    return CapLedger(path, generation=remote.created.isoformat() if remote.created else "")


def used_today(remote, day: datetime.date | None = None) -> dict:
    """Requests per cap class (limits.CAP_CLASSES) the remote made on `day` (today): the
    recorded usage, or the runs' shared count when higher (runs still going count there)."""
    day = day or timezone.localdate()
    sums = RemoteUsage.objects.filter(remote=remote, day=day).aggregate(**{k: Sum(k) for k in USAGE_KINDS})
    used = {cls: sum(int(sums.get(kind.lower()) or 0) for kind in kinds) for cls, kinds in CAP_CLASSES.items()}
    if remote.has_caps() and ledger_path(remote).exists():
        ledger = cap_ledger(remote)
        try:
            live = ledger.used(day)
        finally:
            ledger.close()
        used = {cls: max(n, int(live.get(cls, 0))) for cls, n in used.items()}
    return used


def month_usage(remote, today: datetime.date | None = None) -> tuple[dict, int]:
    """The month's requests by kind ({"PUT": n, …}) and egress bytes, up to `today`."""
    today = today or timezone.localdate()
    sums = (RemoteUsage.objects.filter(remote=remote, day__gte=today.replace(day=1), day__lte=today)
            .aggregate(**{k: Sum(k) for k in (*USAGE_KINDS, "bytes_down")}))
    return _requests_of(sums), int(sums.get("bytes_down") or 0)


def month_so_far(remote, today: datetime.date | None = None) -> cost.CostBreakdown:
    """This month's bill as it stands: the month's requests and egress so far,
    the bytes stored now for the whole month."""
    requests, egress = month_usage(remote, today)
    return cost.monthly_cost(remote.provider or "other", remote.stored_bytes, requests, egress,
                             pricing=remote.pricing())


def _ledger_spent(remote) -> float:
    """This month's spending the runs reserved (at list prices), 0 without a ledger."""
    if not ledger_path(remote).exists():
        return 0.0
    ledger = cap_ledger(remote)
    try:
        return ledger.used(timezone.localdate().replace(day=1)).get(SPEND, 0) / NANO
    finally:
        ledger.close()


def cap_guard(remote, log=None, check_abort=None) -> CapGuard | None:
    """The remote's daily caps and monthly budget for one run (None without any),
    starting from what the remote used today and this month. The daily counts are
    shared with every other run on the remote (cap_ledger); close() the guard when
    the run ends."""
    if not remote.has_caps():
        return None
    budget = None if remote.monthly_budget is None else float(remote.monthly_budget)
    prices = cost.price_per_request(remote.provider or "other", pricing=remote.pricing())
    spent = 0.0
    if budget is not None:
        bill = month_so_far(remote)
        if bill.total is None or prices is None:
            if log:
                log(f"monthly budget of ${budget:,.2f} not enforced: no price list for {remote.provider_label}")
            budget = None
        else:
            spent = bill.total
    return CapGuard(daily_caps=remote.daily_caps, monthly_budget=budget, on_cap=remote.on_cap,
                    used_today=used_today(remote), spent_this_month=spent, prices=prices,
                    remote=remote.remote_id, log=log, check_abort=check_abort,
                    ledger=cap_ledger(remote))


def limits_text(remote, guard: CapGuard | None) -> str:
    """The remote's request limits for a run's log."""
    parts = [f"{remote.request_rate} requests/s" if remote.request_rate else "no request rate limit"]
    if guard is not None:
        for cls, cap in guard.caps.items():
            parts.append(f"class {cls} cap {cap:,}/day ({guard.used[cls]:,} used today)")
        if guard.budget is not None:
            parts.append(f"budget ${guard.budget:,.2f}/month (${guard.spent:,.2f} so far)")
        parts.append(f"at a cap: {guard.on_cap}")
    return "remote limits: " + "; ".join(parts)


def caps_reached(remote) -> list[str]:
    """What the remote has used up: today's caps and this month's budget (for the dashboard)."""
    if not remote.has_caps():
        return []
    out = []
    action = "runs pause until" if remote.on_cap == "pause" else "runs stop until"
    used = used_today(remote)
    for cls, cap in remote.daily_caps.items():
        if cap is not None and used[cls] >= cap:
            kinds = "/".join(CAP_CLASSES[cls])
            out.append(f"Remote '{remote.remote_id}' reached its daily cap of class {cls} requests ({kinds}): "
                       f"{used[cls]:,} of {cap:,} today; {action} tomorrow.")
    if remote.monthly_budget is not None:
        bill = month_so_far(remote)
        spent = None if bill.total is None else max(bill.total, _ledger_spent(remote))
        if spent is not None and spent >= float(remote.monthly_budget):
            out.append(f"Remote '{remote.remote_id}' reached its monthly budget: {cost.format_usd(spent)} "
                       f"of ${remote.monthly_budget:,.2f}; {action} next month.")
    return out
