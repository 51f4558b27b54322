"""The Add/Edit Remote dialog. Field rules come from remotes.engine.config;
this form maps them onto its fields and checks what needs the database."""
import ssl

from django import forms

from remotes.engine import config as cfg_rules
from remotes.engine import providers
from remotes.models import ON_CAP_CHOICES, PROVIDER_CHOICES, Remote

RESERVED_IDS = {"add"}
LIMIT_FIELDS = ("request_rate", "daily_cap_class_a", "daily_cap_class_b", "daily_cap_class_c", "monthly_budget",
                "on_cap")  # /remotes/add/ is the Add dialog
PRICE_FIELDS = Remote.PRICE_FIELDS   # the user's own price table (docs/DESIGN.md §9)
CLASS_PRICE_FIELDS = ("price_class_a", "price_class_b", "price_class_c")


def _price_field(label: str, help_text: str) -> forms.DecimalField:
    return forms.DecimalField(label=label, required=False, min_value=0, max_value=1_000_000, max_digits=14,
                              decimal_places=6, help_text=help_text)


def check_prices(values: dict, instance: Remote | None = None) -> dict:
    """Class prices come as a set: A, B and C together, or none (the provider's)."""
    merged = {name: values.get(name, getattr(instance, name) if instance else None) for name in CLASS_PRICE_FIELDS}
    if all(v is None for v in merged.values()) or all(v is not None for v in merged.values()):
        return {}
    return {name: "set the prices of classes A, B and C together (0 for free), or clear all three"
            for name, v in merged.items() if v is None}


def validate_ca_bundle(pem: str) -> str | None:
    """None if `pem` holds at least one PEM certificate, else the error message. Checked by loading it
    as the S3 client will (ssl, through botocore's `verify`); the ssl module is loaded anyway."""
    if not pem.strip():
        return None
    if "-----BEGIN CERTIFICATE-----" not in pem:
        return "paste the CA certificate in PEM format (-----BEGIN CERTIFICATE----- ...)"
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem.strip())
    except (ssl.SSLError, ValueError):
        return "is not a valid PEM certificate"
    return None


def check_values(data: dict, instance: Remote | None = None) -> dict:
    """Field errors {field: message} for a remote's values (forms, CLI and API share this).

    `data` holds model field names; secret_key may be '' on update (keep the stored one).
    """
    errors = {}
    if instance is None:
        err = cfg_rules.validate_remote_id(data.get("remote_id", ""))
        if err:
            errors["remote_id"] = err.message
        elif data["remote_id"] in RESERVED_IDS:
            errors["remote_id"] = f"'{data['remote_id']}' is reserved, choose another ID"
        elif Remote.objects.filter(remote_id=data["remote_id"]).exists():
            errors["remote_id"] = f"remote '{data['remote_id']}' already exists"
    for name, validator in (("endpoint", cfg_rules.validate_endpoint), ("bucket", cfg_rules.validate_bucket),
                            ("region", cfg_rules.validate_region),
                            ("tls_fingerprint", cfg_rules.validate_fingerprint)):
        if name in data:
            if name in ("bucket", "region") and not data[name]:
                example = providers.get_preset(data.get("provider") or "other").region_example
                errors[name] = "required" + (f", e.g. {example}" if name == "region" else "")
                continue
            err = validator(data[name])
            if err:
                errors[name] = err.message
    if "provider" in data and data["provider"] not in cfg_rules.PROVIDERS:
        errors["provider"] = f"one of {', '.join(cfg_rules.PROVIDERS)}"
    if "access_key" in data and not (data["access_key"] or "").strip():
        errors["access_key"] = "required"
    if "secret_key" in data and not data["secret_key"] and instance is None:
        errors["secret_key"] = "required"
    if data.get("ca_bundle"):
        message = validate_ca_bundle(data["ca_bundle"])
        if message:
            errors["ca_bundle"] = message
    if "min_storage_days" in data and data["min_storage_days"] is not None and data["min_storage_days"] < 0:
        errors["min_storage_days"] = "must not be negative"
    elif "min_storage_days" in data and data["min_storage_days"] is not None and data["min_storage_days"] > 3650:
        errors["min_storage_days"] = "must be at most 3650 days"  # as the dialog; larger does not fit the column
    if "object_lock_days" in data or "object_lock_mode" in data:
        days = data.get("object_lock_days", instance.object_lock_days if instance else 0)
        mode = data.get("object_lock_mode", instance.object_lock_mode if instance else "governance")
        for err in cfg_rules.validate_object_lock(days, mode):
            errors[err.field] = err.message
    return errors


def provider_defaults(provider: str) -> dict:
    """What a new remote of this provider starts with (quirks, minimum storage days)."""
    preset = providers.get_preset(provider)
    values = {"path_style": True, "skip_if_none_match": False, "delete_via_delete_object": False,
              "no_checksum_headers": True, "min_storage_days": 0,
              "daily_cap_class_a": None, "daily_cap_class_b": None, "daily_cap_class_c": None}
    values.update({k: v for k, v in preset.quirks.items() if k in values})
    return values


class RemoteForm(forms.Form):
    remote_id = forms.CharField(label="ID", max_length=64, required=False,
                                widget=forms.TextInput(attrs={"placeholder": "e.g. b2-offsite", "autocomplete": "off"}))
    provider = forms.ChoiceField(label="Provider", choices=PROVIDER_CHOICES, initial="other")
    endpoint = forms.CharField(label="Endpoint", max_length=255, required=False,
                               widget=forms.TextInput(attrs={"placeholder": "https://s3.us-west-004.backblazeb2.com"}))
    bucket = forms.CharField(label="Bucket", max_length=255, required=False)
    region = forms.CharField(label="Region", max_length=64, required=False,
                             widget=forms.TextInput(attrs={"placeholder": "us-east-1"}))
    access_key = forms.CharField(label="Access Key", max_length=255, required=False,
                                 widget=forms.TextInput(attrs={"autocomplete": "off"}))
    secret_key = forms.CharField(label="Secret Key", max_length=1024, required=False, strip=False,
                                 widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}))
    path_style = forms.BooleanField(label="Path-style addressing", required=False, initial=True)
    ca_bundle = forms.CharField(label="CA Certificate", required=False,
                                widget=forms.Textarea(attrs={"rows": 3, "placeholder": "-----BEGIN CERTIFICATE----- (PEM, for a self-signed MinIO)"}))
    tls_fingerprint = forms.CharField(label="Fingerprint", max_length=95, required=False,
                                      widget=forms.TextInput(attrs={"placeholder": "SHA-256, aa:bb:cc:…"}))
    skip_if_none_match = forms.BooleanField(label="Skip If-None-Match header", required=False)
    delete_via_delete_object = forms.BooleanField(label="Delete via DeleteObject (no DeleteObjects)", required=False)
    no_checksum_headers = forms.BooleanField(label="No checksum headers", required=False, initial=True)
    min_storage_days = forms.IntegerField(label="Min. storage days", required=False, min_value=0, max_value=3650)
    object_lock_days = forms.IntegerField(
        label="Object Lock days", required=False, min_value=0, max_value=cfg_rules.MAX_OBJECT_LOCK_DAYS,
        help_text="Lock every pushed object this many days (0: off). The bucket needs Object Lock; "
                  "Test Connection with 'Probe provider features' checks it.")
    object_lock_mode = forms.ChoiceField(label="Object Lock mode", initial="governance", required=False,
                                         choices=[(m, m.capitalize()) for m in cfg_rules.OBJECT_LOCK_MODES])
    comment = forms.CharField(label="Comment", max_length=255, required=False)
    request_rate = forms.IntegerField(label="Requests per second", required=False, min_value=1, max_value=100_000,
                                      help_text="Every method (PUT, GET, HEAD, LIST, DELETE), shared by every job "
                                                "and drill on this remote. Empty: no limit.")
    daily_cap_class_a = forms.IntegerField(label="Daily cap, class A", required=False, min_value=0,
                                           max_value=10**12, help_text="Uploads and deletes per day.")
    daily_cap_class_b = forms.IntegerField(label="Daily cap, class B", required=False, min_value=0,
                                           max_value=10**12, help_text="Downloads and HEADs per day.")
    daily_cap_class_c = forms.IntegerField(label="Daily cap, class C", required=False, min_value=0,
                                           max_value=10**12, help_text="Listings per day.")
    monthly_budget = forms.DecimalField(label="Monthly budget (USD)", required=False, min_value=0,
                                        max_value=10**9, decimal_places=2)
    on_cap = forms.ChoiceField(label="At a cap", choices=ON_CAP_CHOICES, required=False, initial="stop")
    price_storage_tb_month = _price_field("Storage, $/TB-month", "Empty: the provider's list price.")
    price_class_a = _price_field("Class A, $ per 1,000", "Uploads and deletes (PUT, DELETE).")
    price_class_b = _price_field("Class B, $ per 1,000", "Downloads and HEADs (GET, HEAD).")
    price_class_c = _price_field("Class C, $ per 1,000", "Listings (LIST).")
    price_egress_gb = _price_field("Egress, $/GB", "Bytes downloaded. Empty: the provider's list price.")

    MAIN = ("remote_id", "provider", "endpoint", "bucket", "region", "access_key", "secret_key", "path_style",
            "ca_bundle", "tls_fingerprint", "comment")
    ADVANCED = ("skip_if_none_match", "delete_via_delete_object", "no_checksum_headers", "min_storage_days",
                "object_lock_days", "object_lock_mode")
    LIMITS = LIMIT_FIELDS
    PRICES = PRICE_FIELDS

    def __init__(self, *args, instance: Remote | None = None, **kwargs):
        self.instance = instance
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = {name: getattr(instance, name) for name in self.base_fields
                                 if name != "secret_key" and hasattr(instance, name)}
        super().__init__(*args, **kwargs)
        if instance is not None:
            self.fields["remote_id"].disabled = True
            self.fields["secret_key"].widget.attrs["placeholder"] = "unchanged"
            self.fields["secret_key"].help_text = "Leave blank to keep the stored secret key."

    def main_fields(self):
        return [self[name] for name in self.MAIN]

    def advanced_fields(self):
        return [self[name] for name in self.ADVANCED]

    def limit_fields(self):
        return [self[name] for name in self.LIMITS]

    def price_fields(self):
        return [self[name] for name in self.PRICES]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        for name in ("remote_id", "endpoint", "bucket", "region", "access_key", "tls_fingerprint"):
            data[name] = (data.get(name) or "").strip()
        if self.instance is not None:
            data["remote_id"] = self.instance.remote_id
        if not data["region"] and data["endpoint"]:
            data["region"] = providers.region_from_endpoint(data["endpoint"]) or ""
        if data.get("min_storage_days") is None:
            data["min_storage_days"] = (self.instance.min_storage_days if self.instance is not None
                                        else provider_defaults(data["provider"])["min_storage_days"])
        if data.get("object_lock_days") is None:
            data["object_lock_days"] = self.instance.object_lock_days if self.instance is not None else 0
        if not data.get("object_lock_mode"):
            data["object_lock_mode"] = self.instance.object_lock_mode if self.instance is not None else "governance"
        data["on_cap"] = data.get("on_cap") or "stop"
        for name, message in check_values(data, self.instance).items():
            self.add_error(name, message)
        return data

    def values(self) -> dict:
        """The cleaned values for remotes.services.save_remote (an empty secret keeps the stored one)."""
        return {name: self.cleaned_data[name] for name in self.MAIN + self.ADVANCED + self.LIMITS + self.PRICES}


def clean_limits(raw: dict) -> tuple[dict, dict]:
    """Limit and price values from the command line or the API ({model field: text},
    '' = no limit / the provider's price) -> (model values, {field: error}), by the
    dialog's own field rules."""
    values, errors = {}, {}
    for name, value in raw.items():
        try:
            values[name] = RemoteForm.base_fields[name].clean("" if value is None else str(value).strip())
        except forms.ValidationError as e:
            errors[name] = e.messages[0]
    if "on_cap" in values:
        values["on_cap"] = values["on_cap"] or "stop"
    return values, errors


class ConnectionTestForm(RemoteForm):
    """The dialog's values for Test Connection: nothing is saved, the ID may be new or empty."""

    write_probe = forms.BooleanField(label="Write test (put/get/delete a probe object)", required=False)
    probe_features = forms.BooleanField(label="Probe provider features", required=False)

    def clean(self):
        data = forms.Form.clean(self)
        for name in ("remote_id", "endpoint", "bucket", "region", "access_key", "tls_fingerprint"):
            data[name] = (data.get(name) or "").strip()
        if self.instance is not None:
            data["remote_id"] = self.instance.remote_id
            if not data.get("secret_key"):
                data["secret_key"] = self.instance.secret_key
        if not data["region"] and data["endpoint"]:
            data["region"] = providers.region_from_endpoint(data["endpoint"]) or ""
        if data.get("min_storage_days") is None:
            data["min_storage_days"] = 0
        if data.get("object_lock_days") is None:
            data["object_lock_days"] = 0
        data["object_lock_mode"] = data.get("object_lock_mode") or "governance"
        if data.get("ca_bundle"):
            message = validate_ca_bundle(data["ca_bundle"])
            if message:
                self.add_error("ca_bundle", message)
        return data
