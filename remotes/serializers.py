"""Remotes as the JSON API and `remote show` answer them (PBS kebab-case names; never the secret)."""
from remotes.models import Remote


def remote_json(r: Remote) -> dict:
    return {
        "name": r.remote_id, "type": r.type, "provider": r.provider, "endpoint": r.endpoint,
        "bucket": r.bucket, "region": r.region, "access-key": r.access_key,
        "path-style": r.path_style, "skip-if-none-match": r.skip_if_none_match,
        "delete-via-delete-object": r.delete_via_delete_object, "no-checksum-headers": r.no_checksum_headers,
        "ca-bundle": bool(r.ca_bundle), "fingerprint": r.tls_fingerprint or None,
        "min-storage-days": r.min_storage_days,
        "object-lock-days": r.object_lock_days, "object-lock-mode": r.object_lock_mode, "comment": r.comment, "stored-bytes": r.stored_bytes,
        "request-rate": r.request_rate, "daily-cap-class-a": r.daily_cap_class_a,
        "daily-cap-class-b": r.daily_cap_class_b, "daily-cap-class-c": r.daily_cap_class_c,
        "monthly-budget": None if r.monthly_budget is None else float(r.monthly_budget), "on-cap": r.on_cap,
        **{name.replace("_", "-"): None if getattr(r, name) is None else float(getattr(r, name))
           for name in Remote.PRICE_FIELDS},
        "price-date": r.price_date.isoformat() if r.price_date else None,
        "last-test": None if r.last_test_time is None else {
            "ok": r.last_test_ok, "time": int(r.last_test_time.timestamp()), "message": r.last_test_message,
            "latency-ms": r.last_test_latency_ms, "upid": r.last_test_upid or None},
    }


def connection_test_json(task, result) -> dict:
    """A Test Connection run: its task, verdict, messages and the settings it proposes."""
    return {"upid": task.upid, "ok": bool(result and result.ok and task.state != "error"),
            "latency-ms": result.latency_ms if result else None,
            "messages": ([{"level": m.level, "text": m.text} for m in result.messages] if result else
                         [{"level": "error", "text": task.status}] if task.state == "error" else []),
            "proposed": {k.replace("_", "-"): v for k, v in (result.proposed if result else {}).items()}}
