"""Logging in and out; every page and API path needs a login."""
import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_login_failures_from_earlier_runs():
    from django.core.cache import cache
    cache.clear()
    yield
    cache.clear()


def test_login_page_looks_like_pbs(client):
    response = client.get("/login/")
    assert response.status_code == 200
    html = response.content.decode()
    for label in ("User name", "Password", "Realm", "Proxmox Backup authentication server"):
        assert label in html


def test_login_with_realm_and_logout(client, admin_user):
    response = client.post("/login/", {"username": "admin", "password": "admin-password-1", "realm": "pbs"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    client.post("/logout/")
    assert client.get("/").status_code == 302


def test_wrong_password_says_login_failed(client, admin_user):
    response = client.post("/login/", {"username": "admin", "password": "nope", "realm": "pbs"})
    assert response.status_code == 400
    assert "Login failed. Please try again" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_login_does_not_redirect_offsite(client, admin_user):
    response = client.post("/login/?next=https://evil.example/", {
        "username": "admin", "password": "admin-password-1", "realm": "pbs"})
    assert response["Location"] == "/"


def _all_url_paths():
    """Every URL pattern with placeholders filled, so new pages are covered automatically."""
    samples = {"upid": "UPID:n:00000001:00000001:00000000:00000001:backup:x:u@pbs:",
               "store": "store1", "name": "store1", "remote": "remote1", "id": "job1", "job": "job1",
               "username": "someone@pbs", "rule": "rule1", "node": "localhost", "snapshot": "host/a/2026-01-01T00:00:00Z"}

    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                route = prefix + str(p.pattern)
                route = re.sub(r"<int:\w+>", "1", route)
                for key, value in samples.items():
                    for conv in ("str", "path", "slug", "int"):
                        route = route.replace(f"<{conv}:{key}>", value)
                    route = route.replace(f"<{key}>", value)
                if "<" not in route:
                    yield "/" + route.lstrip("^").rstrip("$")

    return sorted(set(walk(get_resolver().url_patterns)))


@pytest.mark.parametrize("url", _all_url_paths())
def test_every_path_needs_login(client, url):
    if url.startswith(("/login/", "/static/")):
        return
    response = client.get(url)
    if url.startswith("/api2/"):
        assert response.status_code == 401, url
    else:
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url


@pytest.mark.parametrize("url", _all_url_paths())
def test_audit_user_gets_403_on_every_post(audit_client, url):
    if url.startswith(("/login/", "/logout/", "/static/")):
        return
    response = audit_client.post(url, {})
    if url.startswith(("/api2/json/backup/", "/api2/json/reader/")):  # docs/PROTOCOL.md: no cookie counts
        assert response.status_code == 401, (url, response.status_code)
        return
    assert response.status_code in (403, 405), (url, response.status_code)


def test_login_is_throttled_after_repeated_failures(client, admin_user):
    for _ in range(5):
        assert client.post("/login/", {"username": "admin", "password": "bad", "realm": "pbs"}).status_code == 400
    response = client.post("/login/", {"username": "admin", "password": "admin-password-1", "realm": "pbs"})
    assert response.status_code == 429
    assert "Too many failed logins. Try again in 5 minutes." in response.content.decode()
    assert "_auth_user_id" not in client.session
