"""The web dashboard in a real headless Chromium (Debian's, at /usr/bin/chromium; `make test` installs it),
driven by Playwright, against the live service: the key from ?api_key=, the job list, a job's page with
its curves drawn and growing from the live event stream without a reload, its checkpoints, the cancel,
pause and resume buttons (and the API's error when one is refused), the list's "Load more" pages. Also the server-drawn loss curve, /metrics.svg and /metrics.png. Screenshots go to
tests/artifacts/ (not committed)."""
import copy
import json
import os
import re
import struct
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from service_fixture import KEYS, running_past, service, submit  # noqa: F401

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SVG = "{http://www.w3.org/2000/svg}"

IRIS = {"name": "iris-dashboard",
        "model": {"layers": [{"type": "Linear", "in_features": 4, "out_features": 16}, {"type": "ReLU"},
                             {"type": "Linear", "in_features": 16, "out_features": 3}]},
        "data": {"dataset": "iris", "validation_split": 0.2, "batch_size": 8},
        "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "Adam", "lr": 0.01},
        "training": {"epochs": 12, "seed": 0, "checkpoint_every_epochs": 4}, "resources": {"device": "cpu"}}


def iris(name, epochs, **training):
    spec = copy.deepcopy(IRIS)
    spec["name"] = name
    spec["training"].update(epochs=epochs, **training)
    return spec


@pytest.fixture(scope="module")
def finished(service):
    """A short job that has succeeded (with validation, checkpoints and weights)."""
    job = submit(service, iris("iris-short", epochs=12))
    done = service.wait_for(job["id"])
    assert done["status"] == "succeeded", done
    return done


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def wait_js(page, expression, timeout=60.0):
    """Poll a JavaScript expression until it is true. (page.wait_for_function evaluates its string
    with eval(), which the dashboard's Content-Security-Policy forbids; page.evaluate is not bound by it.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout} s: {expression}")
        page.wait_for_timeout(50)


def press_across_refreshes(page, selector, hold_ms=1500):
    """Click `selector` with the button held down across the page's refreshes (a running job's page
    redraws itself at least once a second): the click must still land, as a user's slow click does."""
    box = page.locator(selector).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.wait_for_timeout(hold_ms)
    page.mouse.up()


def path_points(page, selector):
    """How many points the SVG path has (its M and L commands)."""
    d = page.locator(selector).first.get_attribute("d") or ""
    return d.count("L") + d.count("M")


# ---- the dashboard ------------------------------------------------------------------------------

def test_key_from_the_url_the_list_and_a_finished_job(service, finished, page):
    page.goto(f"{service.url}/?api_key={KEYS['t1']}")
    row = page.locator(f'tr[data-job-id="{finished["id"]}"]')
    row.wait_for()
    assert "api_key" not in page.url, "the key is taken out of the address bar"
    assert page.evaluate("localStorage.getItem('fita.apiKey')") == KEYS["t1"]
    assert row.locator(".badge").inner_text() == "succeeded"
    assert "val" in row.inner_text()                              # the best metric

    row.locator("a.job-name").click()
    page.wait_for_url(f"**/#/jobs/{finished['id']}")
    page.locator('#job-status [data-status="succeeded"]').wait_for()
    wait_js(page, "document.querySelector('#loss-chart path.validation') !== null")
    n_train = finished["progress"]["step"]
    wait_js(page, f"Number(document.getElementById('loss-chart').dataset.points) === {n_train}")
    assert path_points(page, "#loss-chart path.train-raw") > 20
    assert path_points(page, "#loss-chart path.validation") == 12        # one point per epoch
    assert path_points(page, "#accuracy-chart path.accuracy") == 12
    steps = sorted(int(s) for s in page.locator("#checkpoints tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.step)"))
    with service.client() as c:
        assert steps == sorted(ck["step"] for ck in c.get(f"/v1/jobs/{finished['id']}/checkpoints").json()["data"])
    assert len(steps) == 3                                           # every 4 of the 12 epochs
    assert page.locator("#events li[data-type=succeeded]").count() == 1
    assert page.locator("#events li[data-type=epoch_end]").count() == 12
    assert '"iris-short"' in page.locator("#spec").inner_text()
    assert not page.locator("#cancel").is_visible()                  # nothing to cancel
    with page.expect_download() as dl:                               # a download carries the key, not a URL
        page.locator("#checkpoints a.download").first.click()
    assert dl.value.suggested_filename.endswith(".safetensors")
    chart = page.locator("#loss-chart svg")                          # the crosshair's tooltip
    box = chart.bounding_box()
    chart.hover(position={"x": box["width"] * 0.6, "y": box["height"] * 0.5})
    page.locator("#loss-chart .chart-tip").wait_for()
    shot(page, "dashboard-job-succeeded.png")


def test_a_running_job_is_drawn_live_and_cancelled_from_its_page(service, page):
    job = submit(service, iris("iris-long", epochs=5000, checkpoint_every_epochs=20))
    page.goto(f"{service.url}/#/jobs/{job['id']}?api_key={KEYS['t1']}")
    page.evaluate("window.__sameDocument = true")
    page.locator('#job-status [data-status="running"]').wait_for()
    wait_js(page, "Number(document.getElementById('loss-chart').dataset.points) > 50")
    first = int(page.locator("#loss-chart").get_attribute("data-points"))
    wait_js(page, f"Number(document.getElementById('loss-chart').dataset.points) > {first + 200}")
    wait_js(page, "document.querySelectorAll('#events li[data-type=epoch_end]').length >= 3")
    page.locator("#checkpoints tbody tr").first.wait_for()
    assert path_points(page, "#loss-chart path.train") > 20
    assert page.evaluate("window.__sameDocument") is True, "updated in place, not reloaded"
    shot(page, "dashboard-job-running.png")

    page.on("dialog", lambda dialog: dialog.accept())
    press_across_refreshes(page, "#cancel")
    page.locator('#job-status [data-status="cancelled"]').wait_for()
    page.locator("#events li[data-type=cancelled]").wait_for()
    assert not page.locator("#cancel").is_visible()
    assert service.wait_for(job["id"])["status"] == "cancelled"
    shot(page, "dashboard-job-cancelled.png")


def test_a_running_job_is_paused_and_resumed_from_its_page(service, page):
    from playwright.sync_api import expect
    job = submit(service, iris("iris-pause", epochs=5000, checkpoint_every_epochs=20))
    page.goto(f"{service.url}/#/jobs/{job['id']}?api_key={KEYS['t1']}")
    status = page.locator("#job-status .badge")
    expect(status).to_have_attribute("data-status", "running", timeout=60_000)
    wait_js(page, "Number(document.getElementById('loss-chart').dataset.points) > 20")
    pause = page.get_by_role("button", name="Pause", exact=True)

    # a refusal (the API's 4xx error shape; made up here, as a real one needs a race) is shown, and the
    # job stays as it was
    made_up = {"error": {"code": "invalid_state", "message": "made-up refusal for the test", "param": "job_id"}}
    page.route("**/v1/jobs/*/pause", lambda route: route.fulfill(status=409, content_type="application/json",
                                                                  body=json.dumps(made_up)))
    pause.click()
    expect(page.locator(".alert")).to_have_text("invalid_state: made-up refusal for the test")
    expect(status).to_have_attribute("data-status", "running")
    page.unroute("**/v1/jobs/*/pause")

    press_across_refreshes(page, "#pause")           # at its next step, with a checkpoint
    expect(status).to_have_attribute("data-status", "paused", timeout=60_000)
    expect(page.locator(".alert")).to_have_count(0)  # the refusal went with the next click
    page.locator("#events li[data-type=paused]").wait_for()
    assert service.wait_for(job["id"], until=lambda j: j["status"] != "running")["status"] == "paused"
    expect(pause).to_have_count(0)
    expect(page.locator("#cancel")).to_be_visible()  # a paused job can still be cancelled
    shot(page, "dashboard-job-paused.png")

    press_across_refreshes(page, "#resume")
    expect(status).to_have_attribute("data-status", re.compile(r"^(queued|running|succeeded)$"), timeout=60_000)
    expect(page.locator("#resume")).to_have_count(0)
    expect(pause).to_be_focused()                    # the keyboard's focus stays where Resume was
    with service.client() as c:                      # free the worker for the next tests
        assert c.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    assert service.wait_for(job["id"])["status"] == "cancelled"


def test_the_list_loads_more_pages(service, page):
    """?page_size=2: the list shows the newest 2 jobs; Load more appends the next page (by the cursor)
    until there is none, and a refresh keeps what was loaded (a new job is added on top, none drops off).
    Tenant t3's jobs only, so the list holds just these."""
    from playwright.sync_api import expect
    for i in range(5):
        submit(service, iris(f"page-{i}", epochs=1), tenant="t3")
    page.goto(f"{service.url}/?page_size=2&api_key={KEYS['t3']}")
    names = page.locator("tr.job-row a.job-name")
    more = page.get_by_role("button", name="Load more")
    expect(names).to_have_text(["page-4", "page-3"])
    expect(page.locator(".page-head .muted")).to_contain_text("2+ jobs")
    more.click()
    expect(names).to_have_text(["page-4", "page-3", "page-2", "page-1"])
    expect(more).to_be_visible()
    more.click()
    expect(names).to_have_text(["page-4", "page-3", "page-2", "page-1", "page-0"])
    expect(more).to_be_hidden()
    expect(page.locator(".page-head .muted")).to_contain_text("5 jobs")
    shot(page, "dashboard-list-paged.png")

    submit(service, iris("page-5", epochs=1), tenant="t3")
    expect(names).to_have_text(["page-5", "page-4", "page-3", "page-2", "page-1", "page-0"], timeout=30_000)
    expect(more).to_be_hidden()


def test_the_key_form_and_another_tenant(service, finished, page):
    page.goto(service.url + "/")
    page.locator("#api-key").fill("not-a-key")
    page.locator("#api-key").press("Enter")
    page.locator(".key-card .alert").wait_for()                      # the server's 401 message
    assert "not valid" in page.locator(".key-card .alert").inner_text()
    shot(page, "dashboard-key.png")
    page.locator("#api-key").fill(KEYS["t2"])
    page.locator("#api-key").press("Enter")
    wait_js(page, "document.querySelector('.page-head .muted')?.textContent.includes('jobs')")
    assert page.locator(f'tr[data-job-id="{finished["id"]}"]').count() == 0    # t1's job is not t2's
    page.goto(f"{service.url}/jobs/{finished['id']}")                # the path form of a job's page
    page.locator(".alert").wait_for()
    assert "job_not_found" in page.locator(".alert").inner_text()


# ---- the loss curve as a picture ------------------------------------------------------------------

def test_metrics_svg(service, finished):
    with service.client() as c:
        r = c.get(f"/v1/jobs/{finished['id']}/metrics.svg")
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
        root = ET.fromstring(r.content)
        assert root.tag == f"{SVG}svg" and root.get("width") == "800" and root.get("height") == "450"
        paths = {p.get("class"): p.get("d") for p in root.iter(f"{SVG}path")}
        assert paths["train-raw"].count("L") + 1 == finished["progress"]["step"]   # every step is a point
        assert paths["validation"].count("L") + 1 == 12
        texts = [t.text for t in root.iter(f"{SVG}text")]
        assert {"train loss", "validation loss", "step"} <= set(texts)            # legend and axis label
        assert any(t.startswith("loss") for t in texts) and finished["id"] in " ".join(texts)
        (ARTIFACTS.mkdir(exist_ok=True), (ARTIFACTS / "metrics.svg").write_bytes(r.content))

        log = ET.fromstring(c.get(f"/v1/jobs/{finished['id']}/metrics.svg", params={"yscale": "log",
                                                                                     "width": 640}).content)
        assert log.get("width") == "640" and "loss (log)" in [t.text for t in log.iter(f"{SVG}text")]
        assert c.get(f"/v1/jobs/{finished['id']}/metrics.svg", params={"width": 5}).status_code == 422
    with service.client("t2") as c:                                    # another tenant's job is not there
        r = c.get(f"/v1/jobs/{finished['id']}/metrics.svg")
        assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
    with service.client(None) as c:
        assert c.get(f"/v1/jobs/{finished['id']}/metrics.svg").status_code == 401


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_metrics_png(service, finished):
    with service.client() as c:
        r = c.get(f"/v1/jobs/{finished['id']}/metrics.png")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert _png_size(r.content) == (800, 450) and 10_000 < len(r.content) < 1_000_000
        (ARTIFACTS.mkdir(exist_ok=True), (ARTIFACTS / "metrics.png").write_bytes(r.content))
        hi = c.get(f"/v1/jobs/{finished['id']}/metrics.png", params={"scale": 2})
        assert _png_size(hi.content) == (1600, 900)
        queued = submit(service, iris("iris-queued", epochs=1))                 # no metrics yet: a picture
        r = c.get(f"/v1/jobs/{queued['id']}/metrics.png")                       # saying so, not an error
        assert r.status_code == 200 and _png_size(r.content) == (800, 450)
        service.wait_for(queued["id"])
    with service.client("t2") as c:
        assert c.get(f"/v1/jobs/{finished['id']}/metrics.png").status_code == 404


def test_the_list_follows_every_job(service, page):
    """Last, with the module's jobs there: the list shows each one's status and refreshes itself."""
    job = submit(service, iris("iris-running", epochs=5000))
    page.goto(f"{service.url}/?api_key={KEYS['t1']}")
    row = page.locator(f'tr[data-job-id="{job["id"]}"]')
    row.locator('[data-status="running"]').wait_for()                # queued when submitted: refreshed
    wait_js(page, f"document.querySelector('tr[data-job-id=\"{job['id']}\"]').textContent.includes('step')")
    wait_js(page, "document.querySelectorAll('tr.job-row').length >= 4")
    statuses = set(page.locator("tr.job-row .badge").all_inner_texts())
    assert {"succeeded", "cancelled", "running"} <= statuses
    shot(page, "dashboard-list.png")
    with service.client() as c:
        c.post(f"/v1/jobs/{job['id']}/cancel")
    row.locator('[data-status="cancelled"]').wait_for()


def test_a_failed_job_shows_its_error(service, page):
    spec = {"name": "diverges", "model": {"layers": [{"type": "Linear", "in_features": 8, "out_features": 16},
                                                     {"type": "ReLU"}, {"type": "Linear", "in_features": 16,
                                                                        "out_features": 1}]},
            "data": {"dataset": "regression", "n_samples": 200, "batch_size": 16}, "loss": {"type": "MSELoss"},
            "optimizer": {"type": "SGD", "lr": 1e10}, "training": {"epochs": 5, "seed": 0}}   # diverges to NaN
    job = submit(service, spec)
    assert service.wait_for(job["id"])["status"] == "failed"
    page.goto(f"{service.url}/#/jobs/{job['id']}?api_key={KEYS['t1']}")
    page.locator('#job-status [data-status="failed"]').wait_for()
    assert "nan_loss" in page.locator(".alert").inner_text()
    page.locator("#events li[data-type=failed]").wait_for()
    shot(page, "dashboard-job-failed.png")
    with service.client() as c:
        assert c.get(f"/v1/jobs/{job['id']}/metrics.svg").status_code == 200
        assert c.get(f"/v1/jobs/{job['id']}/metrics.png").status_code == 200
