from django import forms
from django.core.exceptions import ValidationError

from datastores.engine.crypto import MIN_PASSPHRASE
from datastores.engine.datastore import validate_ns
from datastores.engine.errors import DatastoreError
from datastores.models import KEEP_FIELDS, Datastore, PruneJob, VerifyJob, validate_schedule
from datastores.services import FieldError, check_name, check_path, create_datastore

SCHEDULE_HINT = "Calendar event, e.g. daily, hourly, 21:00, mon..fri 02:00, sat *-1..7 02:00"


class DatastoreAddForm(forms.Form):
    name = forms.CharField(label="Name", max_length=32)
    path = forms.CharField(label="Backing Path", max_length=4096,
                           widget=forms.TextInput(attrs={"placeholder": "An absolute path"}))
    schedule = forms.CharField(label="GC Schedule", max_length=128, required=False, initial="daily",
                               help_text=SCHEDULE_HINT)
    comment = forms.CharField(label="Comment", max_length=255, required=False)

    def clean_name(self):
        try:
            return check_name(self.cleaned_data["name"].strip())
        except FieldError as e:
            raise ValidationError(e.message) from None

    def clean_path(self):
        try:
            check_path(self.cleaned_data["path"].strip())
        except FieldError as e:
            raise ValidationError(e.message) from None
        return self.cleaned_data["path"].strip()

    def clean_schedule(self):
        value = self.cleaned_data["schedule"].strip()
        validate_schedule(value)
        return value

    def save(self) -> Datastore | None:
        d = self.cleaned_data
        try:
            return create_datastore(d["name"], d["path"], d["comment"], d["schedule"])
        except FieldError as e:
            self.add_error(e.field if e.field in self.fields else None, e.message)
            return None


class DatastoreOptionsForm(forms.ModelForm):
    class Meta:
        model = Datastore
        fields = ["comment", "schedule", "verify_new"]
        labels = {"schedule": "GC Schedule", "verify_new": "Verify New Snapshots"}
        help_texts = {"schedule": SCHEDULE_HINT}

    def clean_schedule(self):
        value = self.cleaned_data["schedule"].strip()
        validate_schedule(value)
        return value


def _validate_ns(value):
    try:
        return validate_ns(value or "", "namespace")
    except DatastoreError as e:
        raise ValidationError(str(e).split(": ", 1)[-1]) from None


class KeepForm(forms.Form):
    keep_last = forms.IntegerField(label="Keep Last", min_value=0, required=False)
    keep_hourly = forms.IntegerField(label="Keep Hourly", min_value=0, required=False)
    keep_daily = forms.IntegerField(label="Keep Daily", min_value=0, required=False)
    keep_weekly = forms.IntegerField(label="Keep Weekly", min_value=0, required=False)
    keep_monthly = forms.IntegerField(label="Keep Monthly", min_value=0, required=False)
    keep_yearly = forms.IntegerField(label="Keep Yearly", min_value=0, required=False)

    def keep(self) -> dict:
        return {k: self.cleaned_data[k] for k in KEEP_FIELDS if self.cleaned_data.get(k) is not None}


class PruneJobForm(forms.ModelForm):
    class Meta:
        model = PruneJob
        fields = ["job_id", "ns", "max_depth", "schedule", *KEEP_FIELDS, "enabled", "comment"]
        labels = {"max_depth": "Max. Depth", "schedule": "Prune Schedule", "keep_last": "Keep Last",
                  "keep_hourly": "Keep Hourly", "keep_daily": "Keep Daily", "keep_weekly": "Keep Weekly",
                  "keep_monthly": "Keep Monthly", "keep_yearly": "Keep Yearly"}
        help_texts = {"schedule": SCHEDULE_HINT}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["schedule"].required = True
        self.fields["schedule"].initial = "daily"
        self.fields["max_depth"].max_value = 7

    def clean_ns(self):
        return _validate_ns(self.cleaned_data["ns"].strip())

    def clean_schedule(self):
        value = self.cleaned_data["schedule"].strip()
        validate_schedule(value)
        return value

    def clean_max_depth(self):
        v = self.cleaned_data["max_depth"]
        if v is not None and v > 7:
            raise ValidationError("Max. Depth must be at most 7.")
        return v


class VerifyJobForm(forms.ModelForm):
    class Meta:
        model = VerifyJob
        fields = ["job_id", "ns", "schedule", "ignore_verified", "outdated_after", "enabled", "comment"]
        labels = {"schedule": "Schedule"}
        help_texts = {"schedule": SCHEDULE_HINT}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["schedule"].required = True
        self.fields["schedule"].initial = "daily"

    def clean_ns(self):
        return _validate_ns(self.cleaned_data["ns"].strip())

    def clean_schedule(self):
        value = self.cleaned_data["schedule"].strip()
        validate_schedule(value)
        return value


class NotesForm(forms.Form):
    notes = forms.CharField(label="Notes", required=False, max_length=64 * 1024,
                            widget=forms.Textarea(attrs={"rows": 8, "cols": 60}))


class KeyForm(forms.Form):
    kdf = forms.ChoiceField(label="Key Derivation", choices=[("scrypt", "scrypt (passphrase)"),
                                                            ("none", "none (key file only)")],
                            initial="scrypt")
    passphrase = forms.CharField(label="Passphrase", required=False, strip=False,
                                 widget=forms.PasswordInput(render_value=False))
    confirm = forms.CharField(label="Repeat Passphrase", required=False, strip=False,
                              widget=forms.PasswordInput(render_value=False))
    hint = forms.CharField(label="Hint", required=False, max_length=128)

    def clean(self):
        d = super().clean()
        if d.get("kdf") == "scrypt":
            p = d.get("passphrase") or ""
            if len(p) < MIN_PASSPHRASE:
                self.add_error("passphrase", f"At least {MIN_PASSPHRASE} characters are required.")
            elif p != d.get("confirm"):
                self.add_error("confirm", "The passphrases do not match.")
        return d
