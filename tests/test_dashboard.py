"""The dashboard shell in a real browser: sign-in, keys, audit, CSRF and cookies."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from .browser import sign_in
from .conftest import LiveServer, sign_in_http

pytestmark = pytest.mark.browser


def test_sign_in_create_key_and_see_audit_row(server: LiveServer, page: Page) -> None:
    page.goto(server.url + "/keys")
    assert "/login" in page.url
    page.fill("input[name=api_key]", "pk-wrong")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("invalid API key")

    page.fill("input[name=api_key]", server.admin_key)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/keys")
    expect(page.get_by_test_id("who")).to_contain_text("admin")

    cookie = next(c for c in page.context.cookies() if c["name"] == "podium_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    assert server.admin_key not in cookie["value"]

    page.fill("input[name=name]", "made-in-browser")
    page.select_option("select[name=role]", "viewer")
    page.click("form[action='/keys'] button[type=submit]")
    secret = page.get_by_test_id("new-key-secret").inner_text().strip()
    assert secret.startswith("pk-")
    row = page.locator(f"tr[data-key='{secret[:11]}']")
    expect(row).to_contain_text("made-in-browser")
    expect(row).to_contain_text("active")

    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}) as c:
        me = c.get("/api/whoami").json()
        assert me["role"] == "viewer"

    page.click("nav >> text=Audit log")
    audit_row = page.locator("tr.audit-row[data-action='key.create']").first
    expect(audit_row).to_contain_text(f"prefix={secret[:11]}")
    expect(audit_row).to_contain_text("name=made-in-browser")
    expect(audit_row).to_contain_text("admin (pk-")

    page.goto(server.url + "/keys")
    page.on("dialog", lambda d: d.accept())
    page.locator(f"tr[data-key='{secret[:11]}'] button.danger").click()
    expect(page.locator(f"tr[data-key='{secret[:11]}']")).to_contain_text("revoked")
    assert httpx.get(server.url + "/api/whoami", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_projects_page_and_csrf(server: LiveServer, page: Page) -> None:
    sign_in(page, server.url, server.admin_key)
    page.click("nav >> text=Projects")
    page.fill("input[name=name]", "from-the-page")
    page.fill("input[name=description]", "made by a browser")
    page.click("form[action='/projects'] button[type=submit]")
    expect(page.locator("table")).to_contain_text("from-the-page")
    # a forged form post without the CSRF token is refused, even with a valid session cookie
    response = page.request.post(server.url + "/keys", form={"name": "forged", "role": "admin"})
    assert response.status == 403
    assert "CSRF" in response.text()
    # sign out ends the session
    page.click("text=Sign out")
    page.goto(server.url + "/audit")
    assert "/login" in page.url


def test_viewer_sees_no_admin_sections(server: LiveServer, page: Page) -> None:
    with server.client() as c:
        c.post("/api/users", json={"name": "vic", "role": "viewer"})
        key = c.post("/api/keys", json={"name": "vic", "user": "vic"}).json()["key"]
    sign_in(page, server.url, key)
    expect(page.locator("nav")).not_to_contain_text("Audit log")
    page.goto(server.url + "/audit")
    expect(page.get_by_role("alert")).to_contain_text("role 'viewer' may not read the audit log")


def test_models_pages_show_versions_lineage_and_move_aliases(server: LiveServer, page: Page, tiny_models) -> None:
    with server.client() as c:
        c.post("/api/models", json={"name": "tiny", "source": str(tiny_models["llama"]), "description": "a tiny llama"})
        c.post("/api/models", json={"name": "tiny", "source": str(tiny_models["llama2"])})
        c.post("/api/models", json={"name": "tiny-lora", "source": str(tiny_models["lora"]), "base": "tiny@1"})
    sign_in(page, server.url, server.admin_key)
    page.click("nav >> text=Models")
    expect(page.locator("tr[data-model='tiny']")).to_contain_text("v2")
    expect(page.locator("tr[data-model='tiny-lora']")).to_contain_text("chat")
    page.click("text=tiny-lora")
    expect(page.locator("tr.version-row[data-version='1']")).to_contain_text("adapter of tiny@1")
    expect(page.locator("tr.version-row[data-version='1']")).to_contain_text("peft")
    page.goto(server.url + "/models/tiny")
    expect(page.locator("tr.version-row")).to_have_count(2)
    page.fill("input[name=alias]", "production")
    page.select_option("select[name=version]", "1")
    page.click("form[action='/models/tiny/aliases'] button[type=submit]")
    expect(page.locator("tr.version-row[data-version='1']")).to_contain_text("production")
    expect(page.locator("tr.alias-move").first).to_contain_text("production")
    expect(page.locator("tr.alias-move").first).to_contain_text("admin (pk-")
    with server.client() as c:
        assert c.get("/api/models/tiny/versions/production").json()["version"] == 1


def test_an_address_that_keeps_failing_to_sign_in_is_refused_for_a_while(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        statuses = [sign_in_http(c, f"pk-wrong{i}").status_code for i in range(10)]
        assert statuses == [401] * 10
        r = sign_in_http(c, server.admin_key)  # even the right key, for now
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert "too many failed sign-ins" in r.text
