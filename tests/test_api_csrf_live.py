"""Issue 16 #3 against the real gunicorn server: the JSON API accepted the session cookie with a
form-encoded body and no CSRF token, so an auto-submitting form on a same-site origin (another
port, a sibling subdomain) created a traffic rule, a remote, and started verify and prune.

Now a cookie-authenticated write needs the CSRF token in a header (PBS's CSRFPreventionToken or
Django's X-CSRFToken); a request authenticated by an API token needs none."""
import re
import warnings

import pytest
import requests
from urllib3.exceptions import InsecureRequestWarning

from datastores.engine.backup import run_backup
from datastores.services import create_datastore
from pbsweb.apitokens import create_token
from pbsweb.models import Task
from remotes.models import Remote
from syncjobs.models import TrafficControlRule

pytestmark = pytest.mark.django_db(transaction=True)
T0 = 1767225600


@pytest.fixture
def store(tmp_path):
    cfg = create_datastore("store1", str(tmp_path / "store1"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("data")
    for i in range(2):
        run_backup(cfg.engine(), "host", "h1", [("root.tar", src)], backup_time=T0 + i * 3600)
    return cfg


def _snapshots(store) -> int:
    return len(store.engine().list_snapshots(""))


def login(server) -> requests.Session:
    from django.contrib.auth import get_user_model
    admin = get_user_model().objects.get(username="admin@pbs")  # made by firstrun
    admin.set_password("admin-password-1")
    admin.save()
    s = requests.Session()
    s.verify = False
    s.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides verify
    page = s.get(f"{server.url}/login/").text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    r = s.post(f"{server.url}/login/", data={"username": "admin", "password": "admin-password-1", "realm": "pbs",
                                             "csrfmiddlewaretoken": token},
               headers={"Referer": f"{server.url}/login/"}, allow_redirects=False)
    assert r.status_code == 302, r.text
    assert "sessionid" in s.cookies and "csrftoken" in s.cookies
    return s


WRITES = [  # (path, form-encoded body) as the attacker's auto-submitting form sent them
    ("/api2/json/config/traffic-control", {"name": "evil-rule", "rate-out": "1KiB"}),
    ("/api2/json/config/remote", {"name": "evil-remote", "endpoint": "https://s3.evil.example", "bucket": "loot",
                                  "region": "us-east-1", "access-key": "AK", "secret-key": "SK"}),
    ("/api2/json/admin/datastore/store1/verify", {}),
    ("/api2/json/admin/datastore/store1/prune", {"keep-last": "1"}),
]


def _nothing_done(store):
    assert not TrafficControlRule.objects.exists()
    assert not Remote.objects.exists()
    assert not Task.objects.filter(worker_type="verify").exists()
    assert _snapshots(store) == 2


def test_cookie_writes_without_the_csrf_header_are_refused(web_server, store):
    warnings.simplefilter("ignore", InsecureRequestWarning)
    session = login(web_server)
    attacker = "https://127.0.0.1:1"  # a same-site origin: another port on the same host
    for path, body in WRITES:
        for headers in ({"Origin": attacker}, {"Referer": f"{attacker}/page.html"}, {}):
            r = session.post(f"{web_server.url}{path}", data=body, headers=headers)
            assert r.status_code == 403, (path, headers, r.status_code, r.text)
            assert r.headers["Content-Type"] == "application/json"
            assert "csrf" in r.json()["errors"], r.text
        # the form field alone is not enough for the API, even with the right origin: a header is needed
        r = session.post(f"{web_server.url}{path}", data={**body, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
                         headers={"Origin": web_server.url})
        assert r.status_code == 403 and "CSRFPreventionToken" in r.json()["errors"]["csrf"], r.text
    _nothing_done(store)

    # the console's own scripts (and PBS clients) send the token in a header: it works
    token = session.cookies["csrftoken"]
    for i, (path, body) in enumerate(WRITES):
        header = "CSRFPreventionToken" if i % 2 else "X-CSRFToken"
        r = session.post(f"{web_server.url}{path}", data=body, headers={header: token, "Origin": web_server.url})
        assert r.status_code == 200, (path, r.status_code, r.text)
    assert TrafficControlRule.objects.filter(name="evil-rule").exists()
    assert Remote.objects.filter(remote_id="evil-remote").exists()
    assert Task.objects.filter(worker_type="verify").exists()
    assert _snapshots(store) == 1
    # a wrong token in the header is refused too
    r = session.post(f"{web_server.url}/api2/json/config/traffic-control", data={"name": "rule-3", "rate-out": "1KiB"},
                     headers={"X-CSRFToken": "x" * 32, "Origin": web_server.url})
    assert r.status_code == 403 and not TrafficControlRule.objects.filter(name="rule-3").exists()


def test_api_token_requests_need_no_csrf_header(web_server, store):
    warnings.simplefilter("ignore", InsecureRequestWarning)
    from django.contrib.auth import get_user_model
    admin = get_user_model().objects.get(username="admin@pbs")
    _token, secret = create_token(admin, "script", role="Admin")  # a token holds what its own ACL grants
    auth = {"Authorization": f"PBSAPIToken=admin@pbs!script:{secret}"}
    for path, body in WRITES:
        r = requests.post(f"{web_server.url}{path}", data=body, headers=auth, verify=False)
        assert r.status_code == 200, (path, r.status_code, r.text)
    r = requests.put(f"{web_server.url}/api2/json/config/remote/evil-remote", json={"comment": "by token"},
                     headers=auth, verify=False)
    assert r.status_code == 200 and Remote.objects.get(remote_id="evil-remote").comment == "by token"
    # without the token (no cookie either) nothing is allowed
    assert requests.post(f"{web_server.url}/api2/json/config/traffic-control", data={"name": "rule-9"},
                         verify=False).status_code == 401
