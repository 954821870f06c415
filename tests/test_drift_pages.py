"""The drift pages in headless Chromium, on traces sent through `POST /api/traces/ingest` (billing questions, then
drone deliveries in French carrying a hostile snippet): the list of reports with their verdicts; a report's page
with each field's tests and verdicts, a bar chart per descriptor (reference and current shares), the words that
rose and fell and the explaining examples (the hostile snippet shown as text); a report run from the list's form
as a job; a viewer seeing no form; another project's member getting a not-found page. SQLite alone: the pages read
the same services the API tests cover."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from podium.core.db import utcnow

from .browser import sign_in
from .conftest import LiveServer, project_key, serve_for_module
from .test_drift import N, World, billing, drones, send

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


class PagesWorld(World):
    """One project: billing questions in the reference window, drone questions with a hostile tail in the current."""

    def __init__(self, live: LiveServer):
        self.live = live
        self.t0 = utcnow().replace(microsecond=0) - timedelta(hours=3)
        self.t1 = self.t0 + timedelta(hours=1)
        self.t2 = self.t1 + timedelta(hours=1)
        self.shifted = "drift-pages"
        self.key = project_key(live, self.shifted)
        self.viewer = project_key(live, self.shifted, "viewer")
        self.other = project_key(live, "drift-pages-other")
        rng = random.Random(3)
        send(live, self.key, [billing(rng) for _ in range(N)], self.t0)
        send(live, self.key, [(q + " " + XSS, a) for q, a in (drones(rng) for _ in range(N))], self.t1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PagesWorld]:
    for live in serve_for_module("sqlite", tmp_path_factory.mktemp("drift-pages")):
        yield PagesWorld(live)


@pytest.fixture(scope="module")
def report(world: PagesWorld) -> dict[str, Any]:
    r = world.post("/api/drift/reports", world.spec())
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_the_list_and_a_report_page(page: Page, world: PagesWorld, report: dict[str, Any]) -> None:
    sign_in(page, world.live.url, world.key)
    page.goto(world.live.url + "/")  # the overview shows the newest report's verdict
    expect(page.locator("#drift-latest .big a")).to_have_text("drift")
    page.goto(world.live.url + "/drift")
    row = page.locator(f"tr.report-row[data-report={report['id']}]")
    expect(row).to_have_attribute("data-drift", "yes")
    expect(row.locator("[data-col=verdict]")).to_have_text("drift")
    expect(row.locator("[data-col=score]")).to_have_text(f"{report['score']:.3f}")
    row.locator("a").click()
    expect(page.locator("#report-id")).to_have_text(report["id"])
    expect(page.locator("#report-verdict")).to_have_text("drift")
    for field in ("input", "output"):
        section = page.locator(f"section.field[data-field={field}]")
        expect(section.locator("tr.test-row")).to_have_count(6)
        expect(section.locator("tr.test-row[data-test=embedding]")).to_have_attribute("data-verdict", "drift")
        expect(section.locator("tr.test-row[data-test=language]")).to_have_attribute("data-verdict", "drift")
        expect(section.locator("figure.chart")).to_have_count(5)  # every descriptor, not the classifier
        lang = section.locator("figure[data-chart=language]")
        expect(lang.locator("rect[data-side=current]")).to_have_count(lang.locator("rect[data-side=reference]").count())
        expect(lang.locator("text.axis", has_text="fr")).to_have_count(1)
    inputs = page.locator("section.field[data-field=input]")
    risen = {w["word"] for w in next(f for f in report["fields"] if f["field"] == "input")["words_up"]}
    for word in risen:
        expect(inputs.locator(f".words-up tr.word-row[data-word='{word}']")).to_have_count(1)
    expect(inputs.locator("ul.current-like li").first).to_contain_text("drone")
    expect(inputs.locator("ul.current-like li").first).to_contain_text("<script>window.__pwned = 1</script>")
    expect(inputs.locator("ul.reference-like li").first).to_contain_text("How can I")
    assert page.evaluate("window.__pwned") is None


def test_a_report_run_from_the_form(page: Page, world: PagesWorld, report: dict[str, Any]) -> None:
    sign_in(page, world.live.url, world.key)
    page.goto(world.live.url + "/drift")
    page.fill("input[name=reference_from]", world.t0.isoformat())
    page.fill("input[name=reference_to]", world.t1.isoformat())
    page.fill("input[name=current_from]", world.t1.isoformat())
    page.fill("input[name=current_to]", world.t2.isoformat())
    page.click("#run-report")
    page.wait_for_url("**/drift?job=job_*")
    expect(page.locator("#job-card")).to_be_visible()
    link = page.locator("#job-report")  # the page reloads every 2 s until the job ends
    expect(link).to_be_visible(timeout=300_000)
    expect(page.locator("#job-status")).to_have_text("succeeded")
    report_id = (link.get_attribute("href") or "").rsplit("/", 1)[-1]
    expect(page.locator(f"tr.report-row[data-report={report_id}]")).to_have_attribute("data-drift", "yes")
    expect(page.locator("tr.report-row")).to_have_count(2)
    link.click()
    expect(page.locator("#report-id")).to_have_text(report_id)
    expect(page.locator("#report-verdict")).to_have_text("drift")
    response = page.goto(world.live.url + "/drift?job=job_nosuch")
    assert response is not None and response.status == 404


def test_a_viewer_reads_and_another_project_finds_nothing(
    page: Page, world: PagesWorld, report: dict[str, Any]
) -> None:
    sign_in(page, world.live.url, world.viewer)
    page.goto(world.live.url + "/drift")
    expect(page.locator(f"tr.report-row[data-report={report['id']}]")).to_have_count(1)
    expect(page.locator("#run-form")).to_have_count(0)
    page.context.clear_cookies()
    sign_in(page, world.live.url, world.other)
    page.goto(world.live.url + "/drift")
    expect(page.locator("tr.report-row")).to_have_count(0)
    response = page.goto(world.live.url + f"/drift/reports/{report['id']}")
    assert response is not None and response.status == 404
