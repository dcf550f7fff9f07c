"""End to end in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright): upload a face to the
running app and see every face found in it with its label, with and without JavaScript; open a report.html from disk and see its thumbnails.

Without Chromium or Playwright these tests skip, except in CI (CI set), where they fail: .ci/run installs them.
"""

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from werkzeug.serving import make_server

from app.server import create_app
from conftest import paste_face, scene, shared_face_files, synthetic_face
from pipeline.report import write_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOST = "127.0.0.1"
WAIT_MS = 30_000
LABELS_HEADER = "path,label,p_happy,p_sad,model_version,file_size,file_modified\n"
REPORT_FACES = 6


def missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message + " (required in CI: .ci/run installs it)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        missing(f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright Python package is not installed (requirements-test.txt)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def app_url(tiny_model_dir) -> Iterator[str]:
    """The app on a free port of 127.0.0.1, served from a thread of this process."""
    server = make_server(HOST, 0, create_app(str(tiny_model_dir)), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{HOST}:{server.server_port}/"
    server.shutdown()
    thread.join()


def test_upload_a_photo_and_see_every_face(browser, app_url, tmp_path, shared_faces):
    """Two people in a photo: the page shows the photo with two boxes and, per face, the aligned face, its label
    and both probabilities; a photo without a face says so; a non-image gets its one-line reason."""
    photo = scene(seed=31)
    people = [Image.open(p) for p in shared_face_files(shared_faces, "happy", 2, start=60)]
    paste_face(photo, people[0], (180, 240), 180)
    paste_face(photo, people[1], (480, 220), 140, -10)
    two = tmp_path / "two people.jpg"
    photo.save(two, quality=92)
    empty = tmp_path / "field.jpg"
    scene(seed=32).save(empty)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a face")
    page = browser.new_page()
    try:
        page.goto(app_url)
        page.set_input_files("#file", str(two))  # the page posts it to /api/label by itself
        page.wait_for_selector("#result:not([hidden])", timeout=WAIT_MS)
        assert page.inner_text("#filename") == "two people.jpg"
        assert page.inner_text("#summary") == "2 faces found"
        assert page.locator("#boxes .box").count() == 2
        frame = page.eval_on_selector("#photo", "img => img.getBoundingClientRect().toJSON()")
        for box in page.eval_on_selector_all("#boxes .box", "els => els.map(e => e.getBoundingClientRect().toJSON())"):
            assert frame["x"] <= box["x"] and box["x"] + box["width"] <= frame["x"] + frame["width"] + 1
            assert box["width"] > 40 and box["height"] > 40
        cards = page.locator(".face-card")
        assert cards.count() == 2
        for i in range(2):
            card = cards.nth(i)
            assert card.locator(".label").inner_text().split(". ")[1] in ("happy", "sad")
            values = [float(v) for v in card.locator(".prob .value").all_inner_texts()]
            assert len(values) == 2 and sum(values) == pytest.approx(1.0, abs=2e-3)
            assert card.locator("img.face").evaluate("img => [img.naturalWidth, img.naturalHeight]") == [48, 48]
            assert card.locator("img.face").evaluate("img => getComputedStyle(img).imageRendering") == "pixelated"
        assert page.is_hidden("#no-face")

        page.set_input_files("#file", str(empty))
        page.wait_for_selector("#no-face:not([hidden])", timeout=WAIT_MS)
        assert page.inner_text("#summary") == "0 faces found" and page.locator(".face-card").count() == 0

        page.set_input_files("#file", str(notes))
        page.wait_for_selector("#error:not([hidden])", timeout=WAIT_MS)
        assert page.inner_text("#error") == "cannot label this file: not a recognised image format"
        assert page.is_hidden("#result")
    finally:
        page.close()


def test_the_form_works_without_javascript(browser, app_url, tmp_path):
    face = tmp_path / "frown.png"
    synthetic_face(False, seed=78).save(face)
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(app_url)
        page.set_input_files("#file", str(face))
        with page.expect_navigation(timeout=WAIT_MS):
            page.click("button[type=submit]")
        assert page.inner_text(".face-card .label") == "1. sad"
        assert page.eval_on_selector(".face-card img.face", "img => img.naturalWidth") == 48
        assert page.locator("#boxes .box").count() == 1
    finally:
        context.close()


def test_a_report_opened_from_disk_shows_its_thumbnails(browser, tmp_path):
    faces = tmp_path / "faces"
    faces.mkdir()
    rows = []
    for i in range(REPORT_FACES):
        path = faces / f"face_{i}.png"
        synthetic_face(i % 2 == 0, seed=80 + i).save(path)
        p_happy = 0.95 - 0.15 * i
        rows.append(f"{path},{'happy' if p_happy >= 0.5 else 'sad'},{p_happy:.6f},{1 - p_happy:.6f},v1,1,1.0\n")
    rows.append(f"{faces / 'deleted.png'},sad,0.010000,0.990000,v1,1,1.0\n")  # gone since the run: a placeholder
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "labels.csv").write_text(LABELS_HEADER + "".join(rows))
    (run_dir / "errors.csv").write_text("path,error\n/faces/bad.jpg,not a recognised image format\n")
    report = Path(write_report(str(run_dir)))

    page = browser.new_page()
    try:
        page.goto(report.as_uri())
        widths = page.eval_on_selector_all("figure.tile img", "imgs => imgs.map(img => img.naturalWidth)")
        # Every face sits in its class grid and, with this few, in the least-certain grid too.
        assert widths == [48] * (2 * REPORT_FACES)
        assert page.locator("figure.tile .placeholder").count() == 2
        assert page.locator("#histogram svg g.bin").count() > 0
        assert "/faces/bad.jpg" in page.inner_text("#errors")
    finally:
        page.close()
