"""Access Control pages: users, permissions on paths, API tokens."""
import pytest

from pbsweb.access import has_privilege
from pbsweb.models import AclEntry, ApiToken

pytestmark = pytest.mark.django_db


def test_add_user_with_role(admin_client, django_user_model):
    response = admin_client.post("/access/users/add/", {
        "userid": "backupop", "password": "long-password", "role": "DatastoreBackup", "path": "/datastore/store1"})
    assert response.status_code == 302
    user = django_user_model.objects.get(username="backupop@pbs")
    assert has_privilege(user, "Datastore.Backup", "/datastore/store1")
    assert not has_privilege(user, "Datastore.Backup", "/datastore/other")
    assert "DatastoreBackup on /datastore/store1" in admin_client.get("/access/").content.decode()


def test_add_user_bad_name_names_the_field(admin_client, django_user_model):
    response = admin_client.post("/access/users/add/", {
        "userid": "../x", "password": "long-password", "role": "Audit", "path": "/"})
    assert response.status_code == 400
    assert "User name: letters, digits" in response.content.decode()
    assert not django_user_model.objects.filter(username__startswith="../").exists()


def test_deeper_path_overrides_inherited_roles(admin_client, audit_user):
    AclEntry.objects.create(user=audit_user, path="/datastore/secret", role="NoAccess")
    assert has_privilege(audit_user, "Datastore.Audit", "/datastore/public")
    assert not has_privilege(audit_user, "Datastore.Audit", "/datastore/secret")


def test_permission_add_and_remove(admin_client, audit_user):
    response = admin_client.post("/access/permissions/add/", {
        "path": "/remote/b2", "user": audit_user.username, "role": "RemoteAdmin", "propagate": "on"})
    assert response.status_code == 302
    assert has_privilege(audit_user, "Remote.Modify", "/remote/b2")
    entry = AclEntry.objects.get(path="/remote/b2")
    admin_client.post(f"/access/permissions/{entry.id}/remove/")
    assert not has_privilege(audit_user, "Remote.Modify", "/remote/b2")


def test_api_token_secret_shown_once_and_authenticates(admin_client, admin_user, client):
    # a read-only token of the admin: its own role (Audit on /) limits it, as PBS's privilege separation
    response = admin_client.post("/access/tokens/add/", {"user": admin_user.username, "name": "script",
                                                         "role": "Audit", "path": "/"})
    html = response.content.decode()
    assert "admin@pbs!script" in html
    secret = html.split('<pre class="mono">')[1].split("</pre>")[0]
    token = ApiToken.objects.get(name="script")
    assert secret not in token.secret_hash
    assert secret not in admin_client.get("/access/tokens/").content.decode()
    anonymous = client
    anonymous.logout()
    ok = anonymous.get("/api2/json/nodes/localhost/tasks",
                       HTTP_AUTHORIZATION=f"PBSAPIToken=admin@pbs!script:{secret}")
    assert ok.status_code == 200 and "data" in ok.json()
    write = anonymous.post("/api2/json/config/remote", "{}", content_type="application/json",
                           HTTP_AUTHORIZATION=f"PBSAPIToken=admin@pbs!script:{secret}")
    assert write.status_code == 403, "the Admin's read-only token cannot change anything"
    bad = anonymous.get("/api2/json/nodes/localhost/tasks",
                        HTTP_AUTHORIZATION="PBSAPIToken=admin@pbs!script:wrong")
    assert bad.status_code == 401


def test_token_without_roles_holds_nothing_and_grants_appear_on_both_tabs(admin_client, admin_user):
    from django.test import Client
    response = admin_client.post("/access/tokens/add/", {"user": admin_user.username, "name": "bare", "role": ""})
    secret = response.content.decode().split('<pre class="mono">')[1].split("</pre>")[0]
    auth = {"HTTP_AUTHORIZATION": f"PBSAPIToken=admin@pbs!bare:{secret}"}
    client = Client()
    assert client.get("/api2/json/nodes/localhost/tasks", **auth).status_code == 403
    assert admin_client.post("/access/permissions/add/", {
        "path": "/", "user": "admin@pbs!bare", "role": "Audit", "propagate": "on"}).status_code == 302
    assert client.get("/api2/json/nodes/localhost/tasks", **auth).status_code == 200
    assert "Audit on /" in admin_client.get("/access/tokens/").content.decode()
    assert "admin@pbs!bare" in admin_client.get("/access/permissions/").content.decode()
