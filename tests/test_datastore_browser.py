"""In a real browser: log in, add a datastore with the Add Datastore dialog (a bad path first),
see it in the navigation tree, open its Content tab."""
import os

from tests.conftest import browser_login

# Playwright's sync API runs an event loop in this thread; the ORM calls of the fixtures are safe here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def test_add_datastore_dialog_in_browser(transactional_db, admin_user, web_server, page, tmp_path):
    browser_login(page, web_server)
    page.click("nav.tree >> text=Add Datastore")
    dialog = page.locator("#datastore-add-dialog")
    dialog.wait_for(state="visible")
    page.fill("#id_name", "browser1")
    page.fill("#id_path", "relative/dir")
    dialog.locator("button[type=submit]").click()
    dialog.wait_for(state="visible")
    assert "must be an absolute path" in dialog.locator(".field-error").inner_text()
    page.fill("#id_path", str(tmp_path / "bstore"))
    page.fill("#id_comment", "made in a browser")
    dialog.locator("button[type=submit]").click()
    page.wait_for_url(f"{web_server.url}/datastore/browser1/")
    assert page.locator("nav.tree a.ds.active").inner_text().strip().endswith("browser1")
    assert "made in a browser" in page.locator(".panel").inner_text()
    assert (tmp_path / "bstore" / ".pbsweb-datastore.json").exists()
    page.click(".ds-tabs >> text=Content")
    page.wait_for_url(f"{web_server.url}/datastore/browser1/content/")
    assert "No snapshots" in page.locator("#content-table").inner_text()
    page.click(".ds-tabs >> text=Prune & GC")
    page.fill("#id_keep_last", "2")
    page.click("text=Simulate")
    page.locator("#prune-sim-result .sim-summary").wait_for()
