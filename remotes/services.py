"""The one place a remote is created, changed or removed: the dialog, the API and `remote` call these.

Values use the model's field names; every field error raises UserError naming it
(pbsweb.errors.field_errors keeps them all), a remote still in use raises Conflict.
"""
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from pbsweb.errors import Conflict, UserError, field_errors
from remotes.engine.providers import detect_provider, region_from_endpoint
from django.utils import timezone

from remotes.forms import LIMIT_FIELDS, PRICE_FIELDS, check_prices, check_values, clean_limits, provider_defaults
from remotes.models import Remote
from remotes.usage import ledger_path

WRITABLE = ("provider", "endpoint", "bucket", "region", "access_key", "secret_key", "ca_bundle", "tls_fingerprint",
            "comment", "path_style", "skip_if_none_match", "delete_via_delete_object", "no_checksum_headers",
            "min_storage_days", "object_lock_days", "object_lock_mode") + LIMIT_FIELDS + PRICE_FIELDS


def save_remote(values: dict, remote: Remote | None = None) -> Remote:
    """Create a remote (remote=None) or change `remote`. A new remote starts with its provider's
    defaults (detected from the endpoint when no provider is given); an empty secret keeps the
    stored one; the CA certificate file follows the ca_bundle value."""
    values = dict(values)
    if remote is None:
        values.setdefault("remote_id", "")
        values.setdefault("provider", detect_provider(values.get("endpoint") or ""))
        for name in ("endpoint", "bucket", "region", "access_key", "secret_key"):
            values.setdefault(name, "")
        if not values["region"] and values["endpoint"]:
            values["region"] = region_from_endpoint(values["endpoint"]) or ""
    elif values.get("remote_id", remote.remote_id) != remote.remote_id:
        raise UserError("remote_id", "a remote's ID cannot be changed")
    errors = check_values(values, remote)
    limits, limit_errors = clean_limits({k: values[k] for k in LIMIT_FIELDS + PRICE_FIELDS if k in values})
    values.update(limits)
    errors.update(limit_errors)
    if not limit_errors:
        errors.update(check_prices(values, remote))
    if errors:
        raise field_errors(errors)
    prices_changed = any(name in values and values[name] != (getattr(remote, name) if remote else None)
                         for name in PRICE_FIELDS)
    if remote is None:
        remote = Remote(remote_id=values["remote_id"], **provider_defaults(values["provider"]))
    for name in WRITABLE:
        if name in values and not (name == "secret_key" and not values[name]):
            setattr(remote, name, values[name])
    if prices_changed:
        remote.price_date = timezone.localdate() if remote.price_override() else None
    try:
        with transaction.atomic():
            remote.save()
    except IntegrityError:  # added by someone else since the values were checked
        raise UserError("remote_id", f"remote '{remote.remote_id}' already exists") from None
    if remote.ca_bundle:
        remote.write_ca_bundle()
    else:
        remote.remove_ca_bundle()
    return remote


def _users_message(remote: Remote, exc: ProtectedError) -> str:
    users = sorted({f"{getattr(o._meta, 'verbose_name', 'object')} "
                    f"'{getattr(o, 'job_id', None) or getattr(o, 'name', None) or o}'" for o in exc.protected_objects})
    one = len(users) == 1
    return (f"Remote '{remote.remote_id}' is used by {', '.join(users)}: "
            f"remove {'that job' if one else 'those jobs'} or point {'it' if one else 'them'} "
            "at another remote first.")


def remove_remote(remote: Remote) -> None:
    """Delete the remote (its bucket is not touched); Conflict if jobs still use it."""
    try:
        remote.delete()
    except ProtectedError as exc:
        raise Conflict("id", _users_message(remote, exc)) from None
    remote.remove_ca_bundle()
    ledger = ledger_path(remote)
    for path in (ledger, ledger.with_name(ledger.name + "-wal"), ledger.with_name(ledger.name + "-shm")):
        path.unlink(missing_ok=True)
