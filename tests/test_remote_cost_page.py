"""The remote's page answers "what does this remote cost me" (issue 13, docs/DESIGN.md §9):
cost this month so far, the month's forecast, the budget used, requests by class per day,
egress and what the last drill cost, with the prices' date; and the user's own price table
(MinIO, a provider not listed), edited from the dialog, the API and `remote update`, which
every figure then uses."""
import calendar
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from pbsweb import secretbox
from remotes.models import Remote, record_usage
from syncjobs.models import DrillRun
from tests.test_remote_add import form_data

pytestmark = pytest.mark.django_db
URL = "/api2/json/config/remote/own-s3"
PRICES = {"price_storage_tb_month": "5", "price_class_a": "0.005", "price_class_b": "0.0004",
          "price_class_c": "0.005", "price_egress_gb": "0.01"}


@pytest.fixture
def remote():
    secretbox.ensure_key()
    r = Remote(remote_id="own-s3", provider="other", endpoint="https://s3.example.net", bucket="bucket1",
               region="us-east-1", access_key="k", stored_bytes=2 * 10**12, monthly_budget=20)
    r.secret_key = "s3cr3t-value"
    r.save()
    # this month: a push (1,000 PUT, 98 LIST) and a drill (10,000 GET, 2 LIST, 50 GB down)
    record_usage(r, {"PUT": 1000, "LIST": 98, "bytes_up": 10**9}, task="UPID:push:1")
    record_usage(r, {"GET": 10000, "LIST": 2, "bytes_down": 50 * 10**9}, task="UPID:drill:1")
    DrillRun.objects.create(remote=r, time=timezone.now(), ok=True, chunks=10000, bytes_downloaded=50 * 10**9,
                            task_upid="UPID:drill:1")
    return r


def forecast(storage_tb_price: float) -> str:
    today = timezone.localdate()
    scale = calendar.monthrange(today.year, today.month)[1] / today.day
    value = (2 * storage_tb_price + round(1000 * scale) / 1000 * 0.005 + round(10000 * scale) / 1000 * 0.0004
             + round(100 * scale) / 1000 * 0.005 + 50 * scale * 0.01)
    return f"${value:,.2f}"


def page(client) -> str:
    response = client.get("/remotes/own-s3/")
    assert response.status_code == 200
    return response.content.decode()


def cli(*args) -> str:
    out = io.StringIO()
    call_command("remote", *args, stdout=out)
    return out.getvalue()


def test_page_shows_the_month_at_list_prices_and_unknown_for_an_unlisted_provider(admin_client, remote):
    html = page(admin_client)
    assert '<td class="remote-cost-so-far">unknown</td>' in html          # "other": no list prices
    assert "class A 1000, class B 10000, class C 100" in html
    assert "46.57 GiB downloaded: unknown" in html
    assert "List prices as of 2026-11-01" in html
    assert "Requests per day by class (last 30 days)" in html
    assert "Class A (PUT/DELETE)" in html and "class A 1000, class B 10000, class C 100;" in html  # chart title


def test_api_prices_bad_value_names_the_field_good_value_changes_the_forecast(admin_client, remote):
    bad = admin_client.put(URL, json.dumps({"price-storage-tb-month": "-1"}), content_type="application/json")
    assert bad.status_code == 400
    assert bad.json()["errors"] == {"price-storage-tb-month": "Ensure this value is greater than or equal to 0."}
    half = admin_client.put(URL, json.dumps({"price-class-a": "0.005"}), content_type="application/json")
    assert half.status_code == 400 and half.json()["errors"] == {
        "price-class-b": "set the prices of classes A, B and C together (0 for free), or clear all three",
        "price-class-c": "set the prices of classes A, B and C together (0 for free), or clear all three"}
    remote.refresh_from_db()
    assert remote.price_override() is None                                   # nothing written

    params = {k.replace("_", "-"): v for k, v in PRICES.items()}
    assert admin_client.put(URL, json.dumps(params), content_type="application/json").status_code == 200
    shown = admin_client.get(URL).json()["data"]
    today = timezone.localdate().isoformat()
    assert (shown["price-storage-tb-month"], shown["price-class-b"], shown["price-egress-gb"], shown["price-date"]) \
        == (5.0, 0.0004, 0.01, today)
    html = page(admin_client)
    # so far: storage 2 TB x $5 = $10, requests $0.0095, egress 50 GB x $0.01 = $0.50
    assert '<td class="remote-cost-so-far">$10.51</td>' in html
    assert f'<td class="remote-forecast">{forecast(5)}</td>' in html
    assert "$10.51 of $20.00 (53%)" in html and "$0.01/GB ($10/TB)" in html
    assert "46.57 GiB downloaded: $0.50" in html
    assert f"Your prices, as of {today}" in html
    # the last drill: 10,002 requests (10,000 GET) = $0.0040, 50 GB egress = $0.50
    assert "$0.50: 10002 requests (10000 GET) $0.0040, 46.57 GiB downloaded $0.50" in html

    admin_client.put(URL, json.dumps({"price-storage-tb-month": "6"}), content_type="application/json")
    assert f'<td class="remote-forecast">{forecast(6)}</td>' in page(admin_client)


def test_dialog_prices_error_then_saved(admin_client, remote):
    values = form_data(remote_id="own-s3", provider="other", endpoint="https://s3.example.net", bucket="bucket1",
                       region="us-east-1", access_key="k", secret_key="")
    bad = admin_client.post("/remotes/own-s3/edit/", {**values, **PRICES, "price_egress_gb": "cheap"},
                            HTTP_HX_REQUEST="true").content.decode()
    assert "Egress, $/GB: Enter a number." in bad
    remote.refresh_from_db()
    assert remote.price_override() is None
    dialog = admin_client.get("/remotes/own-s3/edit/", HTTP_HX_REQUEST="true").content.decode()
    assert "Prices: your own price table" in dialog and 'name="price_class_b"' in dialog
    saved = admin_client.post("/remotes/own-s3/edit/", {**values, **PRICES}, HTTP_HX_REQUEST="true")
    assert saved.status_code == 204
    assert f'<td class="remote-forecast">{forecast(5)}</td>' in page(admin_client)


def test_cli_prices_error_then_saved_and_cleared(admin_client, remote):
    with pytest.raises(CommandError) as info:
        cli("update", "own-s3", "--price-class-b", "lots")
    assert str(info.value) == "--price-class-b: Enter a number." and info.value.returncode == 2
    args = [a for k, v in PRICES.items() for a in (f"--{k.replace('_', '-')}", v)]
    assert cli("update", "own-s3", *args) == "updated remote 'own-s3'\n"
    shown = json.loads(cli("show", "own-s3", "--output-format", "json"))
    assert (shown["price-storage-tb-month"], shown["price-class-a"]) == (5.0, 0.005)
    assert f'<td class="remote-forecast">{forecast(5)}</td>' in page(admin_client)
    cli("update", "own-s3", "--price-storage-tb-month", "", "--price-class-a", "", "--price-class-b", "",
        "--price-class-c", "", "--price-egress-gb", "")
    remote.refresh_from_db()
    assert remote.price_override() is None and remote.price_date is None
    assert '<td class="remote-forecast">unknown</td>' in page(admin_client)


def test_audit_user_sees_the_figures_but_no_edit_button(client, audit_user, remote):
    client.force_login(audit_user)
    html = page(client)
    assert "remote-cost-so-far" in html and ">Edit prices</button>" not in html
