"""What a remote costs per month: storage, requests and egress, from the
price list in pricing.json (one file, dated, with sources in its notes).

Request counts use the RequestCounters kinds (PUT, LIST, HEAD, GET, DELETE),
so a counters snapshot can be passed as it is.
"""
from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

TB = 10**12           # providers bill decimal units
DAYS_PER_MONTH = 30
PRICING_FILE = Path(__file__).with_name("pricing.json")


@dataclass
class CostBreakdown:
    """Dollars per month; None where the provider's prices are unknown."""
    storage: float | None
    requests: float | None
    egress: float | None
    total: float | None
    notes: list[str] = field(default_factory=list)
    request_classes: dict = field(default_factory=dict)  # class -> {"count", "chargeable", "cost"}


@functools.lru_cache(maxsize=1)
def _load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_pricing(path: str | Path | None = None) -> dict:
    """The price list (a copy: callers may change it freely)."""
    return copy.deepcopy(_load(str(path or PRICING_FILE)))


OVERRIDE_CLASSES = {"A": ("PUT", "DELETE"), "B": ("GET", "HEAD"), "C": ("LIST",)}   # as limits.CAP_CLASSES


def apply_override(pricing: dict, provider: str, override: dict) -> dict:
    """`pricing` with the user's own prices for `provider` (a copy).

    `override`: storage_per_tb_month, egress_per_gb, class_a/b/c (dollars per
    1,000 requests, B2's classes: A uploads and deletes, B GET/HEAD, C LIST),
    min_storage_days, date; None leaves that part at the list price. A
    storage or egress price set replaces the provider's free amounts and
    minimums for that part; request prices come as a set of three (no free
    allowance). `date` (when the user set them) becomes the list's date.
    """
    pricing = copy.deepcopy(pricing)
    base = pricing["providers"].get(provider, pricing["providers"]["other"])
    p = copy.deepcopy(base)
    p["label"] = f"{base['label']}, your prices"
    p["custom"] = True
    if override.get("storage_per_tb_month") is not None:
        p["storage_per_tb_month"] = float(override["storage_per_tb_month"])
        for key in ("free_storage_tb", "min_billable_tb"):
            p.pop(key, None)
    if override.get("egress_per_gb") is not None:
        p["egress_per_tb"] = float(override["egress_per_gb"]) * 1000
        for key in ("free_egress_multiple_of_stored", "egress_fair_use"):
            p.pop(key, None)
    if any(override.get(f"class_{c.lower()}") is not None for c in OVERRIDE_CLASSES):
        p["request_classes"] = {c: {"kinds": list(kinds), "price_per_1000": float(override.get(f"class_{c.lower()}") or 0)}
                                for c, kinds in OVERRIDE_CLASSES.items()}
    if override.get("min_storage_days") is not None:
        p["min_storage_days"] = max(int(override["min_storage_days"]), int(base.get("min_storage_days") or 0))
    pricing["providers"][provider] = p
    if override.get("date"):
        pricing["date"] = override["date"]
    return pricing


def provider_prices(provider: str, pricing: dict | None = None) -> dict:
    providers = (pricing or _load(str(PRICING_FILE)))["providers"]
    return providers.get(provider, providers["other"])


def monthly_cost(provider: str, stored_bytes: float, requests: dict, egress_bytes: float,
                 *, pricing: dict | None = None) -> CostBreakdown:
    """Cost of one month with `stored_bytes` stored on average, `requests`
    made ({kind: count}) and `egress_bytes` downloaded."""
    p = provider_prices(provider, pricing)
    notes: list[str] = []
    storage = _storage_cost(p, stored_bytes, notes)
    request_cost, classes = _request_cost(p, requests or {}, notes)
    egress = _egress_cost(p, egress_bytes, stored_bytes, notes)
    parts = (storage, request_cost, egress)
    total = None if None in parts else sum(parts)
    if total is None:
        notes.append(f"No price list for {p['label']}: enter your provider's prices to estimate the cost.")
    return CostBreakdown(storage, request_cost, egress, total, notes, classes)


def projected_monthly_cost(provider: str, stored_bytes: float, daily_requests: dict, daily_egress: float,
                           *, pricing: dict | None = None) -> CostBreakdown:
    """A month at today's rate: daily requests and egress times 30."""
    month = {kind: count * DAYS_PER_MONTH for kind, count in (daily_requests or {}).items()
             if isinstance(count, (int, float))}
    return monthly_cost(provider, stored_bytes, month, daily_egress * DAYS_PER_MONTH, pricing=pricing)


@dataclass
class RunCost:
    """What one run costs: its requests at list price, by class, and the
    storage cost per month the bytes it adds bring; None where unknown."""
    requests: float | None
    storage_added_per_month: float | None
    request_classes: dict = field(default_factory=dict)  # class -> {"kinds", "count", "cost", "free_per_day", "free_per_month"}
    notes: list[str] = field(default_factory=list)


def run_cost(provider: str, requests: dict, added_bytes: float, stored_bytes: float,
             *, pricing: dict | None = None) -> RunCost:
    """The cost of one run making `requests` ({kind: count}) and adding
    `added_bytes` to a remote that stores `stored_bytes`.

    Requests are priced at list price, before free allowances (a day's
    allowance is shared by every run that day); a class that fits in its
    free daily allowance says so in the notes. The storage cost is the
    difference the added bytes make to the monthly storage bill, so free
    tiers and minimum billable amounts (Wasabi's 1 TB) are accounted for.
    """
    p = provider_prices(provider, pricing)
    notes: list[str] = []
    classes, request_total = {}, None
    if p.get("request_classes") is not None:
        request_total = 0.0
        for name, cls in p["request_classes"].items():
            count = sum(int(requests.get(kind, 0)) for kind in cls["kinds"])
            cost = count / 1000 * cls["price_per_1000"]
            classes[name] = {"kinds": list(cls["kinds"]), "count": count, "cost": cost,
                             "free_per_day": cls.get("free_per_day") or 0,
                             "free_per_month": cls.get("free_per_month") or 0}
            request_total += cost
            free = cls.get("free_per_day")
            if free and count and cls["price_per_1000"]:
                fits = "within" if count <= free else "more than"
                notes.append(f"Class {name} ({'/'.join(cls['kinds'])}): {count:,} requests, {fits} "
                             f"{p['label']}'s free {free:,} a day.")
    before = _storage_cost(p, stored_bytes, [])
    after = _storage_cost(p, stored_bytes + added_bytes, [])
    added = None if before is None or after is None else max(0.0, after - before)
    minimum = p.get("min_billable_tb") or 0
    if minimum and added_bytes and (stored_bytes + added_bytes) / TB <= minimum:
        notes.append(f"{p['label']} bills at least {minimum:g} TB: the added bytes fit in it.")
    if p.get("min_storage_days"):
        notes.append(f"{p['label']} bills every object for at least {p['min_storage_days']} days, "
                     "even when deleted earlier.")
    if request_total is None or added is None:
        notes.append(f"No price list for {p['label']}: enter your provider's prices to estimate the cost.")
    return RunCost(request_total, added, classes, notes)


def price_per_request(provider: str, *, pricing: dict | None = None) -> dict | None:
    """Dollars per request of each kind at list price; None when unknown."""
    classes = provider_prices(provider, pricing).get("request_classes")
    if classes is None:
        return None
    return {kind: cls["price_per_1000"] / 1000 for cls in classes.values() for kind in cls["kinds"]}


def early_deletion_charge(provider: str, deletions: list[tuple[float, float]],
                          *, pricing: dict | None = None) -> float:
    """What deleting objects before the provider's minimum storage time costs
    (Wasabi: 90 days): each (size_bytes, age_days) is billed for the days it
    still had to go, at the storage price."""
    p = provider_prices(provider, pricing)
    min_days = p.get("min_storage_days") or 0
    price = p.get("storage_per_tb_month") or 0.0
    return sum(size / TB * max(0.0, min_days - age) / DAYS_PER_MONTH * price for size, age in deletions)


def cost_per_tb_table(pricing: dict | None = None) -> list[dict]:
    """One row per provider for the docs and the remote dialog."""
    pricing = pricing or _load(str(PRICING_FILE))
    rows = []
    for key, p in pricing["providers"].items():
        rows.append({
            "provider": key,
            "label": p["label"],
            "storage_per_tb_month": p["storage_per_tb_month"],
            "egress": _egress_text(p),
            "requests": _requests_text(p),
            "min_storage_days": p.get("min_storage_days") or 0,
            "one_tb_month": monthly_cost(key, TB, {}, 0, pricing=pricing).total,
        })
    return rows


def format_usd(value: float | None) -> str:
    if value is None:
        return "unknown"
    if 0 < value < 0.01:
        return f"${value:.4f}"
    return f"${value:,.2f}"


# -- parts ---------------------------------------------------------------------

def _storage_cost(p: dict, stored_bytes: float, notes: list[str]) -> float | None:
    price = p.get("storage_per_tb_month")
    if price is None:
        return None
    stored_tb = stored_bytes / TB
    billed_tb = max(0.0, stored_tb - (p.get("free_storage_tb") or 0))
    minimum = p.get("min_billable_tb") or 0
    if stored_bytes > 0 and billed_tb < minimum:
        notes.append(f"{p['label']} bills at least {minimum:g} TB per account: {stored_tb:.3g} TB is billed as {minimum:g} TB.")
        billed_tb = minimum
    return billed_tb * price


def _request_cost(p: dict, requests: dict, notes: list[str]) -> tuple[float | None, dict]:
    classes = p.get("request_classes")
    if classes is None:
        return None, {}
    total, detail = 0.0, {}
    for name, cls in classes.items():
        count = sum(int(requests.get(kind, 0)) for kind in cls["kinds"])
        free = (cls.get("free_per_day") or 0) * DAYS_PER_MONTH + (cls.get("free_per_month") or 0)
        chargeable = max(0, count - free)
        cost = chargeable / 1000 * cls["price_per_1000"]
        detail[name] = {"count": count, "chargeable": chargeable, "cost": cost}
        total += cost
    return total, detail


def _egress_cost(p: dict, egress_bytes: float, stored_bytes: float, notes: list[str]) -> float | None:
    price = p.get("egress_per_tb")
    if price is None:
        return None
    free_bytes = (p.get("free_egress_multiple_of_stored") or 0) * stored_bytes
    if p.get("egress_fair_use") and egress_bytes > stored_bytes:
        notes.append(f"{p['label']}'s free egress is fair use: downloading more than you store each month may "
                     "lead the provider to ask you to change plans.")
    return max(0.0, egress_bytes - free_bytes) / TB * price


def _egress_text(p: dict) -> str:
    price = p.get("egress_per_tb")
    if price is None:
        return "unknown"
    if not price:
        return "free (fair use)" if p.get("egress_fair_use") else "free"
    if p.get("custom"):
        return f"${price / 1000:g}/GB (${price:g}/TB)"
    multiple = p.get("free_egress_multiple_of_stored")
    if multiple:
        return f"free up to {multiple:g}x stored, then ${price:g}/TB"
    return f"${price:g}/TB"


def _requests_text(p: dict) -> str:
    classes = p.get("request_classes")
    if classes is None:
        return "unknown"
    parts = []
    for cls in classes.values():
        if not cls["price_per_1000"]:
            continue
        text = f"{'/'.join(cls['kinds'])} ${cls['price_per_1000']:g} per 1,000"
        if cls.get("free_per_day"):
            text += f" ({cls['free_per_day']:,}/day free)"
        if cls.get("free_per_month"):
            text += f" ({cls['free_per_month']:,}/month free)"
        parts.append(text)
    return "; ".join(parts) or "no request fees"
