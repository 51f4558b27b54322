from django import forms
from django.contrib.auth import authenticate, get_user_model

from pbsweb.access import REALMS, ROLES
from pbsweb.models import ApiToken


def qualified_username(username: str, realm: str) -> str:
    """The user ID a login form means: spaces stripped, `@realm` added when not given."""
    username = (username or "").strip()
    return username if "@" in username else f"{username}@{realm}"


class LoginForm(forms.Form):
    username = forms.CharField(label="User name", max_length=100)
    password = forms.CharField(label="Password", widget=forms.PasswordInput)
    realm = forms.ChoiceField(label="Realm", choices=REALMS, initial="pbs")

    def __init__(self, request=None, *args, **kwargs):
        self.request = request
        self.user = None
        super().__init__(*args, **kwargs)

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        username = qualified_username(data["username"], data["realm"])
        self.user = authenticate(self.request, username=username, password=data["password"])
        if self.user is None:
            # Same message whatever was wrong, as PBS: do not reveal which users exist.
            raise forms.ValidationError("Login failed. Please try again")
        return data


class UserForm(forms.Form):
    userid = forms.RegexField(label="User name", regex=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$", max_length=64,
                              error_messages={"invalid": "User name: letters, digits, '.', '_' and '-' only"})
    password = forms.CharField(label="Password", widget=forms.PasswordInput, min_length=8)
    role = forms.ChoiceField(label="Role", choices=[(r, r) for r in ROLES])
    path = forms.RegexField(label="Path", regex=r"^/([A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)?$", initial="/",
                            error_messages={"invalid": "Path: an ACL path such as / or /datastore/store1"})

    def clean_userid(self):
        userid = self.cleaned_data["userid"] + "@pbs"
        if get_user_model().objects.filter(username=userid).exists():
            raise forms.ValidationError(f"User name: '{userid}' already exists")
        return userid


ACL_PATH_RE = r"^/([A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)?$"


class AclForm(forms.Form):
    path = forms.RegexField(label="Path", regex=ACL_PATH_RE, initial="/",
                            error_messages={"invalid": "Path: an ACL path such as /, /datastore/store1 or /remote/b2"})
    user = forms.ChoiceField(label="User or Token")
    role = forms.ChoiceField(label="Role", choices=[(r, r) for r in ROLES])
    propagate = forms.BooleanField(label="Propagate", required=False, initial=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        users = get_user_model().objects.order_by("username").values_list("username", flat=True)
        tokens = [t.tokenid for t in ApiToken.objects.select_related("user").order_by("user__username", "name")]
        self.fields["user"].choices = [(u, u) for u in users] + [(t, t) for t in tokens]

    def clean_user(self):
        """{"user": User} or {"token": ApiToken}: whom the entry grants the role to."""
        auth_id = self.cleaned_data["user"]
        username, _, name = auth_id.partition("!")
        if name:
            return {"token": ApiToken.objects.get(user__username=username, name=name)}
        return {"user": get_user_model().objects.get(username=username)}


class TokenForm(forms.Form):
    user = forms.ModelChoiceField(label="User", queryset=get_user_model().objects.order_by("username"),
                                  to_field_name="username")
    name = forms.RegexField(label="Token Name", regex=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$",
                            error_messages={"invalid": "Token Name: letters, digits, '.', '_' and '-' only"})
    comment = forms.CharField(label="Comment", required=False, max_length=255)
    # A token holds only what its own ACL entries grant (and its user holds too), as in PBS.
    role = forms.ChoiceField(label="Role", required=False, initial="Audit", choices=[
        ("", "none (grant roles on the Permissions tab)")] + [(r, r) for r in ROLES],
        help_text="Audit: a read-only token.")
    path = forms.RegexField(label="Path", regex=ACL_PATH_RE, initial="/", required=False,
                            error_messages={"invalid": "Path: an ACL path such as /, /datastore/store1 or /remote/b2"})

    def clean(self):
        data = super().clean()
        if data.get("role") and not data.get("path"):
            self.add_error("path", "Path: required with a role")
        if data.get("user") and data.get("name") and data["user"].api_tokens.filter(name=data["name"]).exists():
            self.add_error("name", f"Token Name: {data['user'].username}!{data['name']} already exists")
        return data
