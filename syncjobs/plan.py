"""`sync-job plan`: what a push job's next run uploads (a pull job's: downloads),
the requests it makes, what they cost and how long it takes at the job's rate
limit and the traffic-control time frames. One function, used by the command line, the
job page and the API.
"""
from datetime import datetime

from datastores.engine.prune import KeepOptions
from pbsweb.errors import UserError
from remotes.engine.client import RequestCounters
from remotes.engine.cost import format_usd, monthly_cost, run_cost
from remotes.engine.cost import provider_prices as cost_prices
from remotes.models import record_usage
from remotes.usage import month_usage
from syncjobs.engine.bucket import Bucket, SyncError
from syncjobs.engine.common import fmt_bytes, fmt_eta
from syncjobs.engine.plan import plan_pull, plan_push
from syncjobs.engine.ratelimit import transfer_seconds
from syncjobs.engine.retention import simulate_remote_prune
from syncjobs.engine.scope import Scope, normalize_ns
from syncjobs.models import KEEP_FIELDS, SyncJob
from syncjobs.tasks import open_inventory, push_options, rate_rules


def job_plan(job: SyncJob, *, now: datetime | None = None, pricing: dict | None = None) -> dict:
    """The plan of `job`'s next run as plain data (the API's and the CLI's JSON).

    Touches the bucket with at most one LIST (first run); that request is
    recorded in the remote's usage like any other.
    """
    if job.direction == "pull":
        return pull_plan(job, now=now, pricing=pricing)
    remote = job.remote
    cfg = remote.config()
    counters = RequestCounters()
    bucket = Bucket(remote.client(counters=counters), cfg.bucket, job.remote_store)
    inventory = open_inventory(remote, cfg, job.remote_store)
    try:
        plan = plan_push(job.store.engine(), inventory, push_options(job), bucket,
                         delete_one_by_one=cfg.delete_via_delete_object)
    except SyncError as e:
        raise UserError("remote", f"cannot list the bucket prefix: {e}") from None
    finally:
        inventory.close()
        record_usage(remote, counters.snapshot())
    pricing = pricing or remote.pricing()   # the user's own prices when set
    cost = run_cost(remote.provider, plan.requests, plan.bytes, remote.stored_bytes, pricing=pricing)
    now = now or datetime.now()  # local time, as the traffic-control time frames
    seconds, limited = transfer_seconds(plan.bytes, rate_rules(job, remote), job.rate_out, now)
    return {
        "id": job.job_id, "direction": "push", "remote": remote.remote_id, "remote-store": job.remote_store,
        "provider": remote.provider, "prices-date": pricing.get("date"),
        "snapshots": plan.snapshots, "snapshots-unchanged": plan.snapshots_unchanged,
        "snapshots-vanished": plan.snapshots_vanished,
        "objects": plan.objects, "chunks": plan.chunks, "bytes": plan.bytes,
        "requests": plan.requests,
        "request-classes": cost.request_classes,
        "request-cost": cost.requests,
        "storage-cost-added-per-month": cost.storage_added_per_month,
        "stored-bytes": remote.stored_bytes,
        "seconds": seconds if plan.bytes else 0, "rate-limited": limited,
        "full-listing": plan.reconcile, "exact": plan.exact,
        "notes": plan.notes + cost.notes,
    }


def pull_plan(job: SyncJob, *, now: datetime | None = None, pricing: dict | None = None) -> dict:
    """What a pull job's next run downloads, from one listing of the bucket prefix
    (syncjobs.engine.plan.plan_pull): objects, bytes, GETs, their cost and the egress
    cost at the remote's prices, and the time at the job's rate limit."""
    remote = job.remote
    cfg = remote.config()
    counters = RequestCounters()
    bucket = Bucket(remote.client(counters=counters), cfg.bucket, job.remote_store)
    try:
        plan = plan_pull(bucket, job.store.engine(),
                         Scope(normalize_ns(job.ns), job.max_depth, tuple(job.group_filter or [])),
                         transfer_last=job.transfer_last, remove_vanished=job.remove_vanished)
    except SyncError as e:
        raise UserError("remote", f"cannot list the bucket prefix: {e}") from None
    finally:
        listed = counters.snapshot()
        record_usage(remote, listed)
    pricing = pricing or remote.pricing()
    provider = remote.provider or "other"
    stored = max(remote.stored_bytes or 0, plan.listed_bytes)   # the listing shows what the bucket holds
    requests = run_cost(provider, plan.requests, 0, stored, pricing=pricing)
    egress_so_far = month_usage(remote)[1]
    before = monthly_cost(provider, stored, {}, egress_so_far, pricing=pricing).egress
    after = monthly_cost(provider, stored, {}, egress_so_far + plan.bytes, pricing=pricing).egress
    egress = None if before is None or after is None else after - before
    notes = list(plan.notes)
    if plan.bytes:
        notes.append("bytes: the objects' sizes; the run's listing answers add a little (about 300 bytes "
                     "per object listed)")
    if egress is not None and plan.bytes and not egress and cost_prices(provider, pricing).get("egress_per_tb"):
        notes.append(f"egress: within {cost_prices(provider, pricing)['label']}'s free egress this month")
    if egress is None:
        notes.append(f"egress cost unknown: no egress price for {cost_prices(provider, pricing)['label']}; "
                     "enter your own prices on the remote (Edit prices)")
    now = now or datetime.now()
    seconds, limited = transfer_seconds(plan.bytes, rate_rules(job, remote), job.rate_out, now)
    if remote.request_rate and plan.requests["GET"]:
        notes.append(f"at the remote's {remote.request_rate} requests/s the {plan.requests['GET']:,} GETs alone "
                     f"take at least {fmt_eta(plan.requests['GET'] / remote.request_rate)}")
    return {
        "id": job.job_id, "direction": "pull", "remote": remote.remote_id, "remote-store": job.remote_store,
        "provider": remote.provider, "prices-date": pricing.get("date"),
        "snapshots": plan.snapshots, "snapshots-unchanged": plan.snapshots_unchanged,
        "snapshots-skipped": plan.snapshots_skipped, "snapshots-vanished": plan.snapshots_vanished,
        "objects": plan.objects, "files": plan.files, "chunks": plan.chunks, "chunks-local": plan.chunks_local,
        "bytes": plan.bytes, "requests": plan.requests,
        "request-classes": requests.request_classes, "request-cost": requests.requests,
        "egress-cost": egress, "listed-objects": plan.listed_objects, "listed-bytes": plan.listed_bytes,
        "plan-requests": {k: int(listed.get(k, 0) or 0) for k in ("GET", "PUT", "HEAD", "LIST", "DELETE")},
        "seconds": seconds if plan.bytes else 0, "rate-limited": limited, "exact": plan.exact,
        "notes": notes + [n for n in requests.notes if "bills every object" not in n],   # (deletions only)
    }


def duration_text(data: dict) -> str:
    if not data["bytes"]:
        return "nothing to download" if data.get("direction") == "pull" else "nothing to upload"
    if not data["seconds"] and not data["rate-limited"]:
        return "no rate limit: as fast as the network allows"
    text = fmt_eta(data["seconds"])
    return text if data["rate-limited"] else f"{text} while limited, the rest as fast as the network allows"


def pull_plan_rows(data: dict) -> list[tuple[str, str]]:
    reqs = data["requests"]
    upto = "" if data["exact"] else "at most "
    rows = [
        ("snapshots", f"{data['snapshots']} to download, {data['snapshots-unchanged']} already local"
                      + (f", {data['snapshots-skipped']} skipped (older than the newest local one, or transfer-last)"
                         if data["snapshots-skipped"] else "")
                      + (f", {data['snapshots-vanished']} to remove locally" if data["snapshots-vanished"] else "")),
        ("download", f"{upto}{data['objects']:,} objects ({data['chunks']:,} chunks, {data['files']:,} files), "
                     f"{upto}{fmt_bytes(data['bytes'])}"),
        ("requests", f"{upto}{reqs['GET']:,} GET, {reqs['LIST']:,} LIST"),
    ]
    rows += class_rows(data)
    rows += [
        ("request cost", format_usd(data["request-cost"])),
        ("egress cost", format_usd(data["egress-cost"])),
        ("duration", duration_text(data)),
        ("listed", f"{data['listed-objects']:,} objects, {fmt_bytes(data['listed-bytes'])} "
                   f"({data['plan-requests']['LIST']:,} LIST for this plan)"),
        ("prices as of", data["prices-date"] or "unknown"),
    ]
    rows += [("note", n) for n in data["notes"]]
    return rows


def class_rows(data: dict) -> list[tuple[str, str]]:
    """The plan's requests by price class (B2's A/B/C, or free), with their cost."""
    return [(f"  {'free' if name == 'free' else f'class {name}'} ({'/'.join(cls['kinds'])})",
             f"{cls['count']:,}: {format_usd(cls['cost'])}")
            for name, cls in data["request-classes"].items() if cls["count"] or cls["cost"]]


def plan_rows(data: dict) -> list[tuple[str, str]]:
    """(label, value) lines of a plan for people: the CLI table and the page."""
    if data.get("direction") == "pull":
        return pull_plan_rows(data)
    reqs = data["requests"]
    rows = [
        ("snapshots", f"{data['snapshots']} to sync, {data['snapshots-unchanged']} already on the remote"
                      + (f", {data['snapshots-vanished']} to remove" if data["snapshots-vanished"] else "")),
        ("upload", f"{data['objects']:,} objects ({data['chunks']:,} chunks), {fmt_bytes(data['bytes'])}"),
        ("requests", ", ".join(f"{reqs.get(k, 0):,} {k}" for k in ("PUT", "GET", "HEAD", "LIST", "DELETE"))),
    ]
    rows += class_rows(data)
    rows += [
        ("request cost", format_usd(data["request-cost"])),
        ("storage added", f"{format_usd(data['storage-cost-added-per-month'])} per month"),
        ("duration", duration_text(data)),
        ("full listing", data["full-listing"] or "no"),
        ("prices as of", data["prices-date"] or "unknown"),
    ]
    rows += [("note", n) for n in data["notes"]]
    return rows


# -- the prune simulator of the remote retention -----------------------------------------------

def keep_options(values: dict | None, job: SyncJob) -> KeepOptions:
    """Keep options from `values` ({keep_daily: N, ...}, None for none given), else the job's own."""
    if values:
        return KeepOptions(**{k: v for k, v in values.items() if k in KEEP_FIELDS and v is not None})
    return job.remote_keep or KeepOptions()


def prune_simulation(job: SyncJob, keep: KeepOptions | None = None) -> dict:
    """Which of the bucket's snapshots in the job's scope the remote retention `keep` (default: the
    job's) keeps and removes, each group as PBS prunes (syncjobs.engine.retention), read from the
    prefix's inventory: no request. The CLI's JSON, the API's data and the simulator table."""
    if job.direction != "push":
        raise UserError("id", f"sync job '{job.job_id}' pulls: a remote retention prunes what a push job "
                              "keeps in the bucket")
    keep = keep if keep is not None else keep_options(None, job)
    remote = job.remote
    inventory = open_inventory(remote, remote.config(), job.remote_store)
    try:
        listed = inventory.reconciled_at
        rows = simulate_remote_prune(inventory, Scope(job.ns, job.max_depth, tuple(job.group_filter or [])), keep)
    finally:
        inventory.close()
    notes = []
    if not keep.any():
        notes.append("no keep option: everything is kept (without its own retention the job mirrors local "
                     "retention with remove-vanished)")
    if listed is None:
        notes.append("the job has not run yet: the bucket's snapshots are known after its first run")
    return {
        "id": job.job_id, "remote": remote.remote_id, "remote-store": job.remote_store,
        "keep": {k.replace("_", "-"): getattr(keep, k) for k in KEEP_FIELDS if getattr(keep, k)},
        "kept": sum(1 for r in rows if r.kept), "removed": sum(1 for r in rows if not r.kept),
        "snapshots": [{"ns": r.ns, "backup-type": r.backup_type, "backup-id": r.backup_id, "backup-time": r.time,
                       "snapshot": r.name, "keep": r.kept, "mark": r.mark} for r in rows],
        "rows": rows, "notes": notes,
    }
