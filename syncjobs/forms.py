"""Validation of sync jobs and traffic-control rules, shared by the dialogs,
the CLI and the JSON API: every error names its field, nothing is saved
unless everything is valid."""
import json
import os
import re
import tempfile

from django import forms
from django.db import transaction

from datastores.engine.crypto import load_keyfile
from datastores.engine.errors import DatastoreError
from datastores.models import Datastore
from pbsweb.calendarevent import ScheduleError, parse_schedule
from remotes.models import Remote
from syncjobs.engine.ratelimit import TimeFrame, parse_rate
from syncjobs.engine.recover import parse_as_of
from syncjobs.engine.scope import normalize_ns, parse_group_filter
from syncjobs.models import (
    DEFAULT_DRILL_SAMPLE,
    DEFAULT_WORKERS,
    DIRECTIONS,
    DRILL_ID_RE,
    JOB_ID_RE,
    KEEP_FIELDS,
    RULE_NAME_RE,
    DrillJob,
    SyncJob,
    TrafficControlRule,
)

PREFIX_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$")
MAX_DEPTH = 7
MAX_RATE = 1024 ** 5
SCHEDULE_PRESETS = ["daily", "hourly", "*:0/30", "0/2:00", "2,22:30", "21:00", "mon..fri 00:00",
                    "mon..fri *:00", "sat 18:15", "weekly", "monthly", "0 2 * * *"]


def rate_text(value) -> str:
    """Bytes/s as the compact text a user types: 10485760 -> '10MiB'."""
    if not value:
        return ""
    value = int(value)
    for unit, name in ((1024 ** 3, "GiB"), (1024 ** 2, "MiB"), (1024, "KiB")):
        if value % unit == 0:
            return f"{value // unit}{name}"
    return str(value)


def parse_rate_field(text, field: str) -> int | None:
    try:
        rate = parse_rate(text.strip() if isinstance(text, str) else text)
    except ValueError:
        raise forms.ValidationError(f"{field}: invalid rate {text!r} (e.g. 10MiB, 500KiB, 1G)")
    if rate is not None and rate < 1:
        raise forms.ValidationError(f"{field}: must be at least 1 byte/s")
    if rate is not None and rate > MAX_RATE:
        raise forms.ValidationError(f"{field}: {text!r} is too large (at most 1PiB)")
    return int(round(rate)) if rate else None


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


class BoolField(forms.BooleanField):
    """A checkbox that also accepts 'true'/'false' from the CLI and the API."""

    def to_python(self, value):
        if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off", ""):
            return False
        return super().to_python(value)


class SyncJobForm(forms.Form):
    """The Sync Job dialog ("Sync Job - Push Direction" / "Pull Direction")."""

    id = forms.CharField(label="Job ID", max_length=32)
    direction = forms.ChoiceField(label="Direction", choices=DIRECTIONS, initial="push")
    store = forms.CharField(label="Local Datastore", widget=forms.Select)
    ns = forms.CharField(label="Local Namespace", required=False, max_length=255)
    max_depth = forms.IntegerField(label="Max. Depth", required=False, min_value=0, max_value=MAX_DEPTH)
    remote = forms.CharField(label="Remote", widget=forms.Select)
    remote_store = forms.CharField(label="Remote Store", required=False, max_length=255,
                                   help_text="Prefix in the bucket; defaults to the datastore name")
    schedule = forms.CharField(label="Sync Schedule", required=False, max_length=128)
    remove_vanished = BoolField(label="Remove Vanished", required=False)
    group_filter = forms.CharField(label="Group Filter", required=False, widget=forms.Textarea(attrs={"rows": 3}),
                                   help_text="One per line: [include:|exclude:]type:vm | group:host/web01 | regex:^ct/")
    transfer_last = forms.IntegerField(label="Transfer Last", required=False, min_value=1, max_value=1_000_000)
    rate_out = forms.CharField(label="Rate Limit", required=False, max_length=32,
                               help_text="e.g. 10MiB (per second); empty = unlimited")
    burst_out = forms.CharField(label="Burst", required=False, max_length=32)
    workers = forms.IntegerField(label="Parallel uploads", required=False, min_value=1, max_value=32,
                                 initial=DEFAULT_WORKERS)
    force = BoolField(label="Take over prefix", required=False,
                      help_text="Sync even if the prefix belongs to another datastore")
    enabled = BoolField(label="Enabled", required=False, initial=True)
    comment = forms.CharField(label="Comment", required=False, max_length=255)
    # own remote retention (push): the bucket keeps these instead of mirroring local retention
    keep_last = forms.IntegerField(label="Remote Keep Last", required=False, min_value=1, max_value=100_000,
                                   help_text="Own retention for the bucket (PBS prune), instead of Remove "
                                             "Vanished; empty = mirror local retention")
    keep_hourly = forms.IntegerField(label="Remote Keep Hourly", required=False, min_value=1, max_value=100_000)
    keep_daily = forms.IntegerField(label="Remote Keep Daily", required=False, min_value=1, max_value=100_000)
    keep_weekly = forms.IntegerField(label="Remote Keep Weekly", required=False, min_value=1, max_value=100_000)
    keep_monthly = forms.IntegerField(label="Remote Keep Monthly", required=False, min_value=1, max_value=100_000)
    keep_yearly = forms.IntegerField(label="Remote Keep Yearly", required=False, min_value=1, max_value=100_000)

    # CLI / API names of the fields (for one-line errors)
    CLI_NAMES = {"id": "id", "remote_store": "remote-store", "max_depth": "max-depth",
                 "remove_vanished": "remove-vanished", "group_filter": "group-filter",
                 "transfer_last": "transfer-last", "rate_out": "rate-out", "burst_out": "burst-out",
                 **{name: name.replace("_", "-") for name in KEEP_FIELDS}}

    def __init__(self, *args, instance: SyncJob | None = None, **kwargs):
        self.instance = instance
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = job_to_data(instance)
        super().__init__(*args, **kwargs)
        self.fields["store"].widget.choices = [("", "")] + [
            (n, n) for n in Datastore.objects.values_list("name", flat=True)]
        self.fields["remote"].widget.choices = [("", "")] + [
            (r, r) for r in Remote.objects.values_list("remote_id", flat=True)]
        self.fields["schedule"].widget.attrs.update({"list": "schedule-presets", "placeholder": "none (manual)"})
        self.fields["remote_store"].widget.attrs["placeholder"] = "datastore name"
        self.fields["rate_out"].widget.attrs["placeholder"] = "unlimited"
        self.fields["workers"].widget.attrs["placeholder"] = str(DEFAULT_WORKERS)
        self.fields["direction"].widget.attrs["onchange"] = (
            "this.closest('dialog').querySelector('.sync-direction').textContent = "
            "this.value === 'pull' ? 'Pull' : 'Push'")
        self.fields["store"].widget.attrs["onchange"] = (
            "this.form.elements.remote_store.placeholder = this.value || 'datastore name'")
        if instance is not None:
            self.fields["id"].disabled = True
        if len(self.fields["remote"].widget.choices) == 1:
            self.fields["remote"].help_text = "No S3 remote yet: add one under Configuration → Remotes"

    LAYOUT = (("id", "direction", "store", "ns", "max_depth", "schedule", "rate_out", "burst_out", "comment"),
              ("remote", "remote_store", "remove_vanished", "transfer_last", "workers", "force", "enabled"),
              ("group_filter",) + KEEP_FIELDS)

    def columns(self):
        return [[self[name] for name in names] for names in self.LAYOUT]

    # -- single fields ----------------------------------------------------------
    def clean_id(self):
        if self.instance is not None:
            return self.instance.job_id
        value = self.cleaned_data["id"].strip()
        if not JOB_ID_RE.match(value):
            raise forms.ValidationError("Job ID must be 3-32 characters: letters, digits, '_' and '-', "
                                        "not starting with '-'")
        if SyncJob.objects.filter(job_id=value).exists():
            raise forms.ValidationError(f"sync job '{value}' already exists")
        return value

    def clean_store(self):
        value = self.cleaned_data["store"]
        store = Datastore.objects.filter(name=value).first()
        if store is None:
            raise forms.ValidationError(f"no datastore '{value}'")
        return store

    def clean_remote(self):
        value = self.cleaned_data["remote"]
        remote = Remote.objects.filter(remote_id=value).first()
        if remote is None:
            raise forms.ValidationError(f"no remote '{value}'")
        return remote

    def clean_ns(self):
        try:
            return normalize_ns(self.cleaned_data["ns"])
        except ValueError as e:
            raise forms.ValidationError(str(e).removeprefix("ns: "))

    def clean_remote_store(self):
        value = self.cleaned_data["remote_store"].strip().strip("/")
        if value and (not PREFIX_RE.match(value) or ".." in value.split("/")):
            raise forms.ValidationError("invalid prefix: letters, digits, '.', '_', '-' and '/' between parts")
        return value

    def clean_schedule(self):
        value = " ".join(self.cleaned_data["schedule"].split())
        if value:
            try:
                parse_schedule(value)
            except ScheduleError as e:
                raise forms.ValidationError(str(e))
        return value

    def clean_group_filter(self):
        raw = self.data.getlist("group_filter") if hasattr(self.data, "getlist") else self.data.get("group_filter")
        if isinstance(raw, str) or raw is None:
            raw = [raw or ""]
        lines = [line.strip() for item in raw for line in str(item).splitlines() if line.strip()]
        try:
            parse_group_filter(lines)
        except ValueError as e:
            raise forms.ValidationError(str(e).removeprefix("group-filter: "))
        return lines

    def clean_rate_out(self):
        try:
            return parse_rate_field(self.cleaned_data["rate_out"], "rate")
        except forms.ValidationError as e:
            raise forms.ValidationError(e.messages[0].removeprefix("rate: "))

    def clean_burst_out(self):
        try:
            return parse_rate_field(self.cleaned_data["burst_out"], "burst")
        except forms.ValidationError as e:
            raise forms.ValidationError(e.messages[0].removeprefix("burst: "))

    def clean_workers(self):
        return self.cleaned_data["workers"] or DEFAULT_WORKERS

    def clean(self):
        data = super().clean()
        store = data.get("store")
        if not self.errors.get("remote_store") and store is not None and not data.get("remote_store"):
            data["remote_store"] = store.name
        keeps = [name for name in KEEP_FIELDS if data.get(name)]
        if keeps and data.get("direction") == "pull":
            self.add_error(keeps[0], "own remote retention is for push jobs (a pull mirrors the bucket)")
        elif keeps and data.get("remove_vanished"):
            self.add_error("remove_vanished", f"the job keeps its own retention in the bucket "
                                              f"({keeps[0].replace('_', '-')}): turn off remove-vanished or "
                                              "clear the keep options")
        return data

    # -- errors --------------------------------------------------------------------
    def first_error(self, cli: bool = True) -> str:
        """'field: message' of the first error (CLI and API)."""
        for name, errors in self.errors.items():
            label = self.CLI_NAMES.get(name, name) if cli else self.fields[name].label if name in self.fields else name
            return f"{label}: {errors[0]}" if name != "__all__" else errors[0]
        return ""

    # -- the result (saved by syncjobs.services.save_sync_job after its privilege check) --
    def apply(self) -> SyncJob:
        """The job with the cleaned values, not saved."""
        d = self.cleaned_data
        job = self.instance or SyncJob(job_id=d["id"])
        job.store = d["store"]
        job.remote = d["remote"]
        job.remote_store = d["remote_store"]
        job.ns = d["ns"]
        job.max_depth = d["max_depth"]
        job.group_filter = d["group_filter"]
        job.schedule = d["schedule"]
        job.remove_vanished = d["remove_vanished"]
        job.transfer_last = d["transfer_last"]
        job.rate_out = d["rate_out"]
        job.burst_out = d["burst_out"]
        job.workers = d["workers"]
        job.direction = d["direction"]
        job.force = d["force"]
        job.enabled = d["enabled"]
        job.comment = d["comment"]
        for name in KEEP_FIELDS:
            setattr(job, name, d[name])
        return job


def job_to_data(job: SyncJob) -> dict:
    """The job as form data (the edit dialog's initial values, the base of a CLI update)."""
    return {
        "id": job.job_id, "direction": job.direction, "store": job.store.name, "ns": job.ns,
        "max_depth": "" if job.max_depth is None else job.max_depth, "remote": job.remote.remote_id,
        "remote_store": job.remote_store, "schedule": job.schedule,
        "remove_vanished": job.remove_vanished, "group_filter": "\n".join(job.group_filter or []),
        "transfer_last": job.transfer_last or "", "rate_out": rate_text(job.rate_out),
        "burst_out": rate_text(job.burst_out), "workers": job.workers, "force": job.force,
        "enabled": job.enabled, "comment": job.comment,
        **{name: "" if getattr(job, name) is None else getattr(job, name) for name in KEEP_FIELDS},
    }


def job_edit_data(job: SyncJob) -> dict:
    """job_to_data as submitted values (booleans as 'true' / ''): the base an API or CLI update overlays."""
    return {k: ("true" if v is True else "" if v is False else v) for k, v in job_to_data(job).items()}


# JSON/CLI names -> form field names
API_FIELDS = {"id": "id", "store": "store", "remote": "remote", "remote-store": "remote_store", "ns": "ns",
              "max-depth": "max_depth", "group-filter": "group_filter", "schedule": "schedule",
              "remove-vanished": "remove_vanished", "transfer-last": "transfer_last", "rate-out": "rate_out",
              "burst-out": "burst_out", "worker-threads": "workers", "workers": "workers",
              "sync-direction": "direction", "direction": "direction", "force": "force",
              "enabled": "enabled", "comment": "comment",
              **{name.replace("_", "-"): name for name in KEEP_FIELDS}}


def json_text(value) -> str:
    """A list or object where one value belongs: kept as text, so the field's check rejects it."""
    return json.dumps(value)


def form_data_from_api(values: dict, base: dict | None = None) -> dict:
    """Overlay API/CLI values (PBS names) on `base` form data; raises KeyError for unknown names."""
    data = dict(base or {})
    for key, value in values.items():
        name = API_FIELDS.get(key) or (key if key in API_FIELDS.values() else None)
        if name is None:
            raise KeyError(key)
        if name == "group_filter" and isinstance(value, (list, tuple)):
            value = "\n".join(str(v) for v in value)
        elif isinstance(value, (list, tuple, dict)):
            value = json_text(value)
        if isinstance(value, bool):
            value = "true" if value else ""
        data[name] = "" if value is None else value
    for flag in ("remove_vanished", "force", "enabled"):
        if isinstance(data.get(flag), bool):
            data[flag] = "true" if data[flag] else ""
    return data


# -- traffic control ---------------------------------------------------------------------

def validate_timeframe(text: str) -> str:
    text = " ".join(text.split())
    try:
        TimeFrame(text)
    except (ValueError, IndexError):
        raise forms.ValidationError(f"invalid time frame {text!r} (e.g. 'mon..fri 08:00-18:00')")
    return text


class TrafficControlForm(forms.Form):
    name = forms.CharField(label="Name", max_length=32)
    rate_out = forms.CharField(label="Rate Out", max_length=32, help_text="e.g. 10MiB (per second)")
    burst_out = forms.CharField(label="Burst Out", required=False, max_length=32)
    timeframes = forms.CharField(label="Time frames", required=False, widget=forms.Textarea(attrs={"rows": 3}),
                                 help_text="One per line, e.g. mon..fri 08:00-18:00; empty = always")
    remotes = forms.MultipleChoiceField(label="Remotes", required=False, widget=forms.CheckboxSelectMultiple,
                                        help_text="None selected = all remotes")
    comment = forms.CharField(label="Comment", required=False, max_length=255)

    CLI_NAMES = {"rate_out": "rate-out", "burst_out": "burst-out", "timeframes": "timeframe",
                 "remotes": "remote"}

    def __init__(self, *args, instance: TrafficControlRule | None = None, **kwargs):
        self.instance = instance
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = {"name": instance.name, "rate_out": rate_text(instance.rate_out),
                                 "burst_out": rate_text(instance.burst_out),
                                 "timeframes": "\n".join(instance.timeframes or []),
                                 "remotes": instance.remote_names(), "comment": instance.comment}
        super().__init__(*args, **kwargs)
        self.fields["remotes"].choices = [(r, r) for r in Remote.objects.values_list("remote_id", flat=True)]
        self.fields["rate_out"].widget.attrs["placeholder"] = "10MiB"
        if instance is not None:
            self.fields["name"].disabled = True

    def clean_name(self):
        if self.instance is not None:
            return self.instance.name
        value = self.cleaned_data["name"].strip()
        if not RULE_NAME_RE.match(value):
            raise forms.ValidationError("Name must be 3-32 characters: letters, digits, '_' and '-', "
                                        "not starting with '-'")
        if TrafficControlRule.objects.filter(name=value).exists():
            raise forms.ValidationError(f"rule '{value}' already exists")
        return value

    def clean_rate_out(self):
        try:
            return parse_rate_field(self.cleaned_data["rate_out"], "rate")
        except forms.ValidationError as e:
            raise forms.ValidationError(e.messages[0].removeprefix("rate: "))

    def clean_burst_out(self):
        try:
            return parse_rate_field(self.cleaned_data["burst_out"], "burst")
        except forms.ValidationError as e:
            raise forms.ValidationError(e.messages[0].removeprefix("burst: "))

    def clean_timeframes(self):
        raw = self.data.getlist("timeframes") if hasattr(self.data, "getlist") else self.data.get("timeframes")
        if isinstance(raw, str) or raw is None:
            raw = [raw or ""]
        lines = [line for item in raw for line in str(item).splitlines() if line.strip()]
        return [validate_timeframe(line) for line in lines]

    def first_error(self, cli: bool = True) -> str:
        for name, errors in self.errors.items():
            label = self.CLI_NAMES.get(name, name) if cli else self.fields[name].label if name in self.fields else name
            return f"{label}: {errors[0]}" if name != "__all__" else errors[0]
        return ""

    @transaction.atomic
    def save(self) -> TrafficControlRule:
        d = self.cleaned_data
        rule = self.instance or TrafficControlRule(name=d["name"])
        rule.rate_out = d["rate_out"]
        rule.burst_out = d["burst_out"]
        rule.timeframes = d["timeframes"]
        rule.comment = d["comment"]
        rule.save()
        rule.remotes.set(Remote.objects.filter(remote_id__in=d["remotes"]))
        return rule


# -- restore drills ---------------------------------------------------------------------------

class DrillJobForm(forms.Form):
    """The Restore Drill dialog; also validates `drill create` on the CLI."""

    id = forms.CharField(label="Drill ID", max_length=32)
    remote = forms.CharField(label="Remote", widget=forms.Select)
    remote_store = forms.CharField(label="Remote Store", required=False, max_length=255,
                                   help_text="Prefix in the bucket; empty = every datastore prefix")
    sample_size = forms.IntegerField(label="Older snapshots", required=False, min_value=0, max_value=1000,
                                     help_text="Random older snapshots per group checked besides the newest")
    schedule = forms.CharField(label="Schedule", required=False, max_length=128)
    enabled = BoolField(label="Enabled", required=False, initial=True)
    comment = forms.CharField(label="Comment", required=False, max_length=255)
    budget = forms.CharField(label="Budget per run", required=False, max_length=32,
                             help_text="Bytes to download per run, e.g. 10GiB: each run verifies the next slice "
                                       "of the prefix, the whole of it every K runs. Empty: no byte budget.")
    max_gets = forms.IntegerField(label="GETs per run", required=False, min_value=1, max_value=10**9,
                                  help_text="Or a number of chunk downloads per run.")

    CLI_NAMES = {"id": "id", "remote_store": "remote-store", "sample_size": "sample", "max_gets": "max-gets"}

    def __init__(self, *args, instance=None, **kwargs):
        self.instance = instance
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = {"id": instance.job_id, "remote": instance.remote.remote_id,
                                 "remote_store": instance.remote_store, "sample_size": instance.sample_size,
                                 "schedule": instance.schedule, "enabled": instance.enabled,
                                 "comment": instance.comment, "budget": rate_text(instance.budget_bytes),
                                 "max_gets": instance.max_gets}
        super().__init__(*args, **kwargs)
        self.fields["remote"].widget.choices = [("", "")] + [
            (r, r) for r in Remote.objects.values_list("remote_id", flat=True)]
        self.fields["schedule"].widget.attrs.update({"list": "schedule-presets", "placeholder": "none (manual)"})
        self.fields["sample_size"].widget.attrs["placeholder"] = "2"
        if instance is not None:
            self.fields["id"].disabled = True

    def clean_id(self):
        if self.instance is not None:
            return self.instance.job_id
        value = self.cleaned_data["id"].strip()
        if not DRILL_ID_RE.match(value):
            raise forms.ValidationError("Drill ID must be 3-32 characters: letters, digits, '_', '.' and '-', "
                                        "not starting with '-' or '.'")
        if DrillJob.objects.filter(job_id=value).exists():
            raise forms.ValidationError(f"restore drill '{value}' already exists")
        return value

    clean_remote = SyncJobForm.clean_remote
    clean_remote_store = SyncJobForm.clean_remote_store
    clean_schedule = SyncJobForm.clean_schedule

    def clean_sample_size(self):
        value = self.cleaned_data["sample_size"]
        return DEFAULT_DRILL_SAMPLE if value is None else value

    def clean_budget(self):
        text = self.cleaned_data["budget"]
        if not (text or "").strip():
            return None
        try:
            value = parse_rate(text.strip())
        except ValueError:
            raise forms.ValidationError(f"invalid size {text!r} (e.g. 10GiB, 500MiB)") from None
        if value is None or value < 1024 * 1024:
            raise forms.ValidationError("must be at least 1MiB")
        return int(value)

    def clean(self):
        data = super().clean()
        if data.get("budget") and data.get("max_gets"):
            self.add_error("max_gets", "give a byte budget or a number of GETs, not both")
        elif (data.get("budget") or data.get("max_gets")) and not data.get("remote_store") \
                and "remote_store" not in self.errors:
            self.add_error("remote_store", "a drill on a budget verifies one prefix: name it")
        return data

    def apply(self):
        """The drill with the cleaned values, not saved (syncjobs.services.save_drill saves it)."""
        d = self.cleaned_data
        job = self.instance or DrillJob(job_id=d["id"])
        job.remote = d["remote"]
        job.remote_store = d["remote_store"]
        job.sample_size = d["sample_size"]
        job.schedule = d["schedule"]
        job.enabled = d["enabled"]
        job.comment = d["comment"]
        if (job.budget_bytes, job.max_gets) != (d["budget"], d["max_gets"]):
            job.cursor, job.budget_credit, job.runs_per_pass = "", 0, None   # a new budget starts a new pass
        job.budget_bytes, job.max_gets = d["budget"], d["max_gets"]
        return job


RESTORE_KEY_NONE, RESTORE_KEY_UPLOAD = "", "upload"


AS_OF_HELP = ("Read the bucket as it was at this time (UTC), from the object versions it keeps "
              "(Object Lock): what was deleted or overwritten later is read as it was")


def as_of_field(required: bool) -> forms.CharField:
    """An "As of (UTC)" time, as `--as-of` takes it (syncjobs.engine.recover.parse_as_of)."""
    return forms.CharField(label="As of (UTC)", max_length=64, required=required, help_text=AS_OF_HELP,
                           widget=forms.TextInput(attrs={"placeholder": "2026-11-30T18:00:00Z"}))


def clean_as_of_value(value: str) -> str:
    """'' (not given) or the time in ISO form; ValidationError with parse_as_of's reason."""
    if not (value or "").strip():
        return ""
    try:
        return parse_as_of(value).isoformat()
    except ValueError as e:
        raise forms.ValidationError(str(e)) from None


class RemoteRestoreForm(forms.Form):
    """Restore archive (from Remote → Content): one archive of a bucket snapshot to a path here."""

    remote_store = forms.CharField(label="Remote Store", required=False, max_length=255, widget=forms.HiddenInput)
    snapshot = forms.CharField(label="Snapshot", max_length=1024, widget=forms.HiddenInput)
    archive = forms.ChoiceField(label="Archive")
    target = forms.CharField(label="Target", max_length=4096,
                             help_text="Absolute path on this server: a new or empty directory for a .tar "
                                       "archive, a file for an .img archive")
    key_source = forms.ChoiceField(label="Encryption key", required=False)
    keyfile = forms.FileField(label="Key file", required=False)
    passphrase = forms.CharField(label="Passphrase", required=False, max_length=1024,
                                 widget=forms.PasswordInput(render_value=False))
    as_of = as_of_field(required=False)

    def __init__(self, *args, snapshot=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.snapshot_info = snapshot
        archives = [f.filename.rsplit(".", 1)[0] for f in (snapshot.files if snapshot else [])
                    if f.filename.endswith((".didx", ".fidx"))]
        self.fields["archive"].choices = [(a, a) for a in archives]
        choices = [(RESTORE_KEY_NONE, "none")]
        for name, fp in Datastore.objects.exclude(key_fingerprint="").values_list("name", "key_fingerprint"):
            choices.append((f"store:{name}", f"key of datastore {name} ({fp})"))
        choices.append((RESTORE_KEY_UPLOAD, "upload a key file"))
        self.fields["key_source"].choices = choices
        if snapshot is not None and snapshot.encrypted:
            match = [c for c, label in choices if c.startswith("store:") and snapshot.key_fingerprint in label]
            self.fields["key_source"].initial = match[0] if match else RESTORE_KEY_UPLOAD
        self.crypt = None

    def clean_as_of(self):
        return clean_as_of_value(self.cleaned_data.get("as_of"))

    def clean_target(self):
        value = self.cleaned_data["target"].strip()
        if not os.path.isabs(value):
            raise forms.ValidationError("must be an absolute path (e.g. /srv/restore/web01)")
        return os.path.normpath(value)

    def clean(self):
        data = super().clean()
        snap = self.snapshot_info
        archive, target = data.get("archive"), data.get("target")
        if archive and target:
            if archive.endswith(".tar") and os.path.exists(target):
                if not os.path.isdir(target):
                    self.add_error("target", f"{target} exists and is not a directory")
                elif os.listdir(target):
                    self.add_error("target", f"directory {target} is not empty")
            if archive.endswith(".img") and os.path.isdir(target):
                self.add_error("target", f"{target} is a directory; an image restores to a file")
        if snap is None or not snap.encrypted:
            return data
        source = data.get("key_source") or ""
        fp = snap.key_fingerprint
        if source == RESTORE_KEY_NONE:
            self.add_error("key_source", f"snapshot {snap.name} is encrypted with key {fp}: choose a key")
            return data
        if source.startswith("store:"):
            ds = Datastore.objects.filter(name=source[6:]).first()
            if ds is None or not ds.has_key():
                self.add_error("key_source", f"datastore '{source[6:]}' has no encryption key")
                return data
            if ds.key_fingerprint != fp:
                self.add_error("key_source", f"wrong key: snapshot {snap.name} is encrypted with key {fp}, "
                                             f"the key of datastore {ds.name} is {ds.key_fingerprint}")
            data["key_store"] = ds.name
            return data
        upload = data.get("keyfile")
        if upload is None:
            self.add_error("keyfile", f"snapshot {snap.name} is encrypted with key {fp}: upload its key file")
            return data
        text = upload.read(1024 * 1024).decode("utf-8", "replace")
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            f.write(text)
            f.flush()
            try:
                crypt = load_keyfile(f.name, data.get("passphrase") or None)
            except DatastoreError as e:
                msg = str(e).replace(f.name, "the uploaded key file")
                self.add_error("passphrase" if "passphrase" in msg else "keyfile", msg)
                return data
        if crypt.fingerprint != fp:
            self.add_error("keyfile", f"wrong key: snapshot {snap.name} is encrypted with key {fp}, "
                                      f"the key file has {crypt.fingerprint}")
            return data
        self.crypt = crypt
        data["keyfile_text"] = text
        return data


class RecoverForm(forms.Form):
    """Recover bucket as of <time> (the remote's page): the `remote recover` command's fields."""

    remote_store = forms.CharField(label="Remote Store", max_length=255,
                            help_text="The store prefix in the bucket (as on the Content tab)")
    as_of = forms.CharField(label="As of (UTC)", max_length=64,
                            widget=forms.TextInput(attrs={"placeholder": "2026-11-30T18:00:00Z"}),
                            help_text="A time before the damage: every object is brought back to the version "
                                      "it had then; objects written later are hidden, not destroyed")

    def clean_remote_store(self):
        value = self.cleaned_data["remote_store"].strip().strip("/")
        if not value:
            raise forms.ValidationError("required, the store prefix in the bucket")
        return value

    def clean_as_of(self):
        try:
            return parse_as_of(self.cleaned_data["as_of"]).isoformat()
        except ValueError as e:
            raise forms.ValidationError(str(e)) from None


class RunAsOfForm(forms.Form):
    """Pull as of… (Sync Jobs): run a pull job reading the bucket as it was at a time."""

    as_of = as_of_field(required=True)

    def __init__(self, *args, job=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.job = job

    def clean_as_of(self):
        if self.job is not None and self.job.direction != "pull":
            raise forms.ValidationError(f"only a pull job reads the bucket as of a time "
                                        f"('{self.job.job_id}' pushes)")
        return clean_as_of_value(self.cleaned_data["as_of"])
