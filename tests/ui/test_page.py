"""The web page in a real browser: ask with a photo, compare models, stop, errors, batch, models,
phone width, keyboard only, the API key. Screenshots: tests/ui/artifacts/<test name>.png."""

from __future__ import annotations

import json

import httpx
import pytest

from imgscribe.scheduler import Scheduler
from imgscribe.store import Store
from imgscribe.testing import photo_path
from server.conftest import add_echo, b64, image_bytes, live_server, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

BUILTIN = "builtin:latest"


def column(page, model: str):
    return page.locator(f'.column[data-model="{model}"]')


def choose(page, *models: str) -> None:
    for box in page.locator("#ask-models input[type=checkbox]").all():
        box.set_checked(box.get_attribute("value") in models)


def send(page, prompt: str, *models: str, files=()) -> None:
    if files:
        page.set_input_files("#ask-files", [str(f) for f in files])
    choose(page, *models)
    page.fill("#ask-prompt", prompt)
    page.click("#ask-send")


def stat(col, key: str) -> str:
    return col.locator(f'.turn >> nth=-1 >> [data-stat="{key}"]').inner_text()


def test_the_page_is_served_and_ollama_clients_still_see_plain_text(ui_server):
    url = ui_server.url
    assert httpx.get(url + "/").text == "Ollama is running"
    assert httpx.get(url + "/", headers={"Accept": "application/json"}).text == "Ollama is running"
    browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    r = httpx.get(url + "/", headers={"Accept": browser_accept})
    assert r.headers["content-type"].startswith("text/html") and "<title>imgscribe</title>" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    for name, kind in (("app.js", "text/javascript"), ("ask.js", "text/javascript"), ("style.css", "text/css")):
        asset = httpx.get(f"{url}/ui/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind), name
    for bad in ("/ui/../pyproject.toml", "/ui/%2e%2e/ui.py", "/ui/..%2fapp.py", "/ui/ui.py", "/ui/nope.js",
                "/ui/.hidden.js", "/ui/%5c..%5capp.py"):  # fmt: skip
        assert httpx.get(url + bad).status_code == 404, bad
    # The page's own origin passes the Origin guard; a foreign page's does not.
    for origin in (url, f"http://localhost:{ui_server.port}"):
        assert httpx.get(url + "/api/tags", headers={"Origin": origin}).status_code == 200
    assert httpx.get(url + "/api/tags", headers={"Origin": "https://evil.example"}).status_code == 403


def test_a_photo_gets_a_streamed_answer_from_builtin(page, ui_server, tmp_path):
    cat = photo_path("chelsea")
    send(page, "Describe this image.", BUILTIN, files=[cat])
    col = column(page, BUILTIN)
    col.locator(".turn.done").wait_for()
    text = col.locator(".answer").inner_text()
    assert "cat" in text.lower(), text
    assert stat(col, "image-tokens") == "not reported by this model"  # builtin counts no image tokens
    assert stat(col, "ttft").endswith("s") and stat(col, "tps") != ""
    assert col.locator(".answer").get_attribute("aria-live") == "polite"
    # A follow-up keeps the conversation: the model gets both turns.
    send(page, "And the colours?", BUILTIN)
    wait_for(lambda: col.locator(".turn.done").count() == 2, 60)
    assert col.locator(".turn").count() == 2 and col.locator(".turn.failed").count() == 0


def test_two_models_answer_side_by_side_with_timings(page, tmp_path):
    cat = tmp_path / "cat.png"
    cat.write_bytes(photo_path("chelsea").read_bytes())
    send(page, "What is this?", BUILTIN, "echo-test:latest", files=[cat])
    left, right = column(page, BUILTIN), column(page, "echo-test:latest")
    left.locator(".turn.done").wait_for()
    right.locator(".turn.done").wait_for()
    assert right.locator(".answer").inner_text().startswith("echo: What is this? | 1 image(s): 451x300")
    for col in (left, right):
        assert stat(col, "ttft") != "–" and float(stat(col, "tps")) > 0
    assert stat(right, "image-size") == "451×300" and stat(right, "image-tokens") == "16"
    a, b = left.bounding_box(), right.bounding_box()
    assert abs(a["y"] - b["y"]) < 2 and b["x"] > a["x"] + a["width"] - 1  # side by side
    # Follow-ups go to each model with its own history.
    send(page, "again", BUILTIN, "echo-test:latest")
    wait_for(lambda: right.locator(".turn.done").count() == 2, 30)
    assert right.locator(".answer").nth(1).inner_text().startswith("echo: What is this? again")


def test_stop_cancels_the_answer_and_frees_the_slot(page, ui_server):
    send(page, "a long answer please", "echo-slow:latest")
    col = column(page, "echo-slow:latest")
    page.wait_for_function("() => document.querySelector('.answer')?.textContent.length > 20")
    first = col.locator(".answer").inner_text()
    page.wait_for_function(f"() => document.querySelector('.answer').textContent.length > {len(first)}")
    assert ui_server.scheduler.running() == 1  # it streams, token by token, while the model works
    page.click("#ask-stop")
    col.locator(".turn.stopped").wait_for()
    assert "Stopped." in col.inner_text()
    assert wait_for(lambda: httpx.get(ui_server.url + "/health").json()["running"] == 0, 10)
    ps = httpx.get(ui_server.url + "/api/ps").json()["models"]
    assert [m["name"] for m in ps if m["name"].startswith("echo-slow")]  # still loaded, but idle
    runner = next(r for r in ui_server.scheduler.ps() if r.info.name.startswith("echo-slow"))
    assert ui_server.scheduler.running() == 0, runner
    assert page.is_enabled("#ask-send") and not page.is_enabled("#ask-stop")


def test_errors_are_shown_in_words(page, ui_server, ui_store, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not a picture at all")
    page.set_input_files("#ask-files", [str(broken)])
    page.wait_for_selector(".previews .placeholder")  # no preview, the file name is shown
    assert "broken.jpg" in page.inner_text("#ask-previews")
    send(page, "Describe this image.", "echo-test:latest")
    col = column(page, "echo-test:latest")
    col.locator(".turn.failed").wait_for()
    assert "is not a supported image" in col.locator(".answer").inner_text()
    # A text-only model cannot be chosen while images are attached.
    page.set_input_files("#ask-files", [str(broken)])
    text_only = page.locator('#ask-models input[value="echo-text:latest"]')
    assert text_only.is_disabled()
    page.click(".previews .remove")
    assert text_only.is_enabled()
    # A model that went away behind the page's back.
    add_echo(ui_store, "echo-gone")
    page.reload()
    page.wait_for_selector('#ask-models input[value="echo-gone:latest"]')
    ui_store.delete("echo-gone")
    send(page, "hello", "echo-gone:latest")
    gone = column(page, "echo-gone:latest")
    gone.locator(".turn.failed").wait_for()
    assert "not found" in gone.locator(".answer").inner_text()


def test_a_batch_of_three_downloads_as_jsonl_and_csv(page, tmp_path):
    files = []
    for i, color in enumerate(("red", "green", "blue")):
        path = tmp_path / f"img{i}.png"
        path.write_bytes(image_bytes((40 + i, 30), color))
        files.append(path)
    page.click("#tab-batch")
    page.set_input_files("#batch-files", [str(f) for f in files])
    page.select_option("#batch-model", "echo-test:latest")
    page.click("#batch-start")
    page.wait_for_function("() => document.querySelector('#batch-status').textContent.startsWith('3 of 3 done')")
    assert page.eval_on_selector("#batch-progress", "p => p.value === p.max && p.max === 3")
    with page.expect_download() as got:
        page.click("#batch-jsonl")
    lines = [json.loads(line) for line in open(got.value.path()).read().splitlines()]
    assert [r["file"] for r in lines] == ["img0.png", "img1.png", "img2.png"]
    assert all(r["model"] == "echo-test:latest" and r["response"].startswith("echo: Describe this image.") for r in lines)
    assert [r["images"][0]["size"] for r in lines] == [[40, 30], [41, 30], [42, 30]]
    with page.expect_download() as got:
        page.click("#batch-csv")
    csv = open(got.value.path()).read().splitlines()
    assert csv[0].startswith("file,model,response") and len(csv) == 4


def test_models_tab_lists_deletes_and_reports_a_bad_pull(page, ui_store):
    from imgscribe.types import ModelInfo, ModelManifest

    add_echo(ui_store, "echo-doomed")
    info = ModelInfo(name="big-gguf", engine="llamacpp", size=9_000_000_000_000, parameter_size="7B",
                     capabilities=["completion", "vision"])  # fmt: skip
    ui_store.create("big-gguf", ModelManifest(name="big-gguf", engine="llamacpp", info=info))
    page.reload()
    page.click("#tab-models")
    row = page.locator('#models-table tr[data-model="echo-doomed:latest"]')
    row.wait_for()
    assert "vision" in row.inner_text()
    builtin = page.locator(f'#models-table tr[data-model="{BUILTIN}"]').inner_text()
    assert "not a VLM" in builtin and "MB" in builtin
    big = page.locator('#models-table tr[data-model="big-gguf:latest"]').inner_text()
    assert "needs about" in big and "does not fit" in big and "free" in big  # imgscribe's memory estimate
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button").click()
    row.wait_for(state="detached")
    assert not ui_store.exists("echo-doomed")
    page.fill("#pull-name", "no such/name::at all")
    page.click("#pull-start")
    page.wait_for_function("() => document.querySelector('#pull-error').textContent.startsWith('Error: ')")
    assert "Traceback" not in page.inner_text("#pull-error")


def test_phone_width_has_no_horizontal_scroll(browser, ui_server, tmp_path):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        page.goto(ui_server.url + "/ui")
        page.wait_for_selector("#ask-models input[type=checkbox]")
        send(page, "Describe this image.", "echo-test:latest", "echo-slow:latest", files=[photo_path("chelsea")])
        column(page, "echo-test:latest").locator(".turn.done").wait_for()
        page.click("#ask-stop")
        column(page, "echo-slow:latest").locator(".turn.stopped").wait_for()
        page.screenshot(path=str(_artifact("phone-ask.png")), full_page=True)
        assert page.evaluate("() => document.documentElement.scrollWidth <= 390")
        a, b = column(page, "echo-test:latest").bounding_box(), column(page, "echo-slow:latest").bounding_box()
        assert a["x"] == b["x"] and (b["y"] >= a["y"] + a["height"] or a["y"] >= b["y"] + b["height"])  # stacked
        for tab in ("#tab-batch", "#tab-models"):
            page.click(tab)
            page.screenshot(path=str(_artifact(f"phone-{tab[5:]}.png")), full_page=True)
            assert page.evaluate("() => document.documentElement.scrollWidth <= 390"), tab
    finally:
        context.close()


def test_keyboard_only(page):
    page.keyboard.press("Tab")  # the skip link first
    seen = []
    for _ in range(30):
        page.keyboard.press("Tab")
        seen.append(page.evaluate("() => document.activeElement.id || document.activeElement.tagName"))
        if seen[-1] == "ask-send":
            break
    order = [x for x in seen if x in ("ask-files", "ask-prompt", "ask-send") or x.startswith("ask-model-")]
    assert order[0] == "ask-files" and order[-1] == "ask-send", seen
    assert "ask-prompt" in order and any(x.startswith("ask-model-") for x in order), seen
    assert order.index("ask-prompt") > max(i for i, x in enumerate(order) if x.startswith("ask-model-"))
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # the focus is visible
    # Choose a model with the keyboard, write and press Enter.
    choose(page)  # nothing chosen
    page.focus('#ask-models input[value="echo-test:latest"]')
    page.keyboard.press("Space")
    page.focus("#ask-prompt")
    page.keyboard.press("Control+A")
    page.keyboard.type("typed with keys")
    page.keyboard.press("Enter")
    col = column(page, "echo-test:latest")
    col.locator(".turn.done").wait_for()
    assert col.locator(".answer").inner_text().startswith("echo: typed with keys")
    # The tabs follow the arrow keys.
    page.focus("#tab-ask")
    page.keyboard.press("ArrowRight")
    assert page.is_visible("#panel-batch") and page.evaluate("() => document.activeElement.id") == "tab-batch"


def test_with_an_api_key_the_page_asks_for_it_once(browser, monkeypatch, tmp_path):
    monkeypatch.setenv("IMGSCRIBE_API_KEY", "sesame-0123456789")
    store = Store(tmp_path / "models")
    add_echo(store, "echo-test")
    scheduler = Scheduler(store, num_parallel=0)
    context = browser.new_context()
    try:
        with live_server(scheduler) as server:
            assert httpx.get(server.url + "/api/tags").status_code == 401
            page = context.new_page()
            page.goto(server.url + "/ui")
            page.wait_for_selector("#key-form:not([hidden])")
            page.screenshot(path=str(_artifact("api-key-asked.png")), full_page=True)
            page.fill("#key-input", "wrong")
            page.click("#key-form button")
            page.wait_for_function("() => document.querySelector('#key-error').textContent.includes('not accepted')")
            page.fill("#key-input", "sesame-0123456789")
            page.click("#key-form button")
            page.wait_for_selector("#key-form", state="hidden")
            send(page, "hi", "echo-test:latest")
            column(page, "echo-test:latest").locator(".turn.done").wait_for()
            page.reload()  # kept for the tab: not asked again
            page.wait_for_selector('#ask-models input[value="echo-test:latest"]')
            assert page.is_hidden("#key-form")
            page.screenshot(path=str(_artifact("api-key.png")), full_page=True)
    finally:
        context.close()
        scheduler.close()


def _artifact(name: str):
    from .conftest import ARTIFACTS

    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


def test_heic_is_previewed_by_the_servers_own_decoding(page, tmp_path):
    import io

    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(buf, format="HEIF")
    heic = tmp_path / "phone photo.heic"
    heic.write_bytes(buf.getvalue())
    page.set_input_files("#ask-files", [str(heic)])
    shown = page.locator('.previews img[alt*="decoded by the server"]')
    shown.wait_for()  # the browser cannot decode HEIC: the server's JPEG thumbnail is shown
    assert page.evaluate("(img) => img.naturalWidth", shown.element_handle()) == 64
    assert "phone photo.heic" in page.inner_text("#ask-previews")
    send(page, "Describe this image.", "echo-test:latest")
    col = column(page, "echo-test:latest")
    col.locator(".turn.done").wait_for()
    assert "1 image(s): 64x48" in col.locator(".answer").inner_text()


def test_dark_theme_follows_the_system(browser, ui_server):
    context = browser.new_context(color_scheme="dark", viewport={"width": 1000, "height": 700})
    page = context.new_page()
    try:
        page.goto(ui_server.url + "/ui")
        page.wait_for_selector("#ask-models input[type=checkbox]")
        background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(22, 23, 26)", background
        page.screenshot(path=str(_artifact("dark.png")), full_page=True)
    finally:
        context.close()


def test_a_busy_server_is_said_in_words(browser, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    store = Store(tmp_path / "models")
    add_echo(store, "narrow", parallel=1, delay=0.05, tokens=60)  # about 3 s an answer
    scheduler = Scheduler(store, max_queue=1)
    context = browser.new_context()
    body = {"model": "narrow", "messages": [{"role": "user", "content": "hold"}], "stream": False}
    try:
        with live_server(scheduler) as server, ThreadPoolExecutor(2) as pool:
            page = context.new_page()
            page.goto(server.url + "/ui")
            page.wait_for_selector('#ask-models input[value="narrow:latest"]')
            scheduler.load("narrow")
            held = [pool.submit(httpx.post, server.url + "/api/chat", json=body, timeout=30)]
            assert wait_for(lambda: scheduler.running() == 1)
            held.append(pool.submit(httpx.post, server.url + "/api/chat", json=body, timeout=30))
            assert wait_for(lambda: scheduler.queue_depth() == 1)
            send(page, "me too", "narrow:latest")
            col = column(page, "narrow:latest")
            col.locator(".turn.failed").wait_for()
            assert "busy" in col.locator(".answer").inner_text()
            page.screenshot(path=str(_artifact("busy.png")), full_page=True)
            assert [f.result().status_code for f in held] == [200, 200]
    finally:
        context.close()
        scheduler.close()


def test_options_presets_and_json_reach_the_model(page):
    page.select_option("#ask-preset", "tags")
    assert page.is_checked("#ask-json") and page.input_value("#ask-prompt").startswith("List tags")
    choose(page, "echo-test:latest")
    page.click("#ask-send")
    col = column(page, "echo-test:latest")
    col.locator(".turn.done").wait_for()
    json.loads(col.locator(".answer").inner_text())  # format: "json" was sent
    page.select_option("#ask-preset", "describe")
    assert not page.is_checked("#ask-json")
    page.click(".options summary")
    page.fill("#opt-predict", "2")
    page.fill("#opt-temperature", "0.2")
    page.fill("#opt-image", "64")
    page.click("#ask-new")
    page.click("#ask-send")
    col.locator(".turn.done").wait_for()
    assert stat(col, "tokens") == "2" and stat(col, "reason") == "length"
    # Images dropped on the page (a drag from the desktop) are attached too.
    page.evaluate("""(b64) => {
        const png = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([png], 'dropped.png', {type: 'image/png'}));
        document.getElementById('ask-drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));
    }""", b64(image_bytes((2, 1))))
    assert "dropped.png" in page.inner_text("#ask-previews")
    page.fill("#opt-predict", "")
    page.click("#ask-send")
    wait_for(lambda: col.locator(".turn.done").count() == 2, 30)
    assert "1 image(s): 2x1" in col.locator(".answer").nth(1).inner_text()


def test_builtin_and_a_tiny_checkpoint_side_by_side(browser, tmp_path):
    """A real transformers model (Gemma 3's architecture, random weights: its text is noise; its
    shapes, image tokens and timings are real) beside ``builtin``."""
    from imgscribe import testing
    from imgscribe.store.importer import create_from_path

    store = Store(tmp_path / "models")
    create_from_path(store, "tiny-gemma", testing.build("gemma3", tmp_path / "gemma3"))
    scheduler = Scheduler(store)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        with live_server(scheduler) as server:
            page = context.new_page()
            page.goto(server.url + "/ui")
            page.wait_for_selector('#ask-models input[value="tiny-gemma:latest"]')
            page.click(".options summary")
            page.fill("#opt-predict", "8")
            send(page, "Describe this image.", BUILTIN, "tiny-gemma:latest", files=[photo_path("coffee")])
            left, right = column(page, BUILTIN), column(page, "tiny-gemma:latest")
            left.locator(".turn.done").wait_for(timeout=240_000)
            right.locator(".turn.done").wait_for(timeout=240_000)
            page.screenshot(path=str(_artifact("builtin-vs-tiny-gemma.png")), full_page=True)
            for col in (left, right):
                assert stat(col, "ttft") != "–" and float(stat(col, "tps")) > 0
            assert int(stat(right, "image-tokens")) > 0 and "×" in stat(right, "image-size")
            assert stat(right, "tokens") == "8"
            a, b = left.bounding_box(), right.bounding_box()
            assert abs(a["y"] - b["y"]) < 2 and b["x"] > a["x"]
    finally:
        context.close()
        scheduler.close()


def test_pull_shows_progress_then_the_model_is_listed(browser, tmp_path, monkeypatch):
    from imgscribe.store.pull import download
    from store.fake_remotes import FakeRegistry
    from store.test_pull_ollama import add_llava

    monkeypatch.setattr(download, "MIN_PART_SIZE", 64 * 1024)
    monkeypatch.setattr(download, "CHUNK", 16 * 1024)
    registry = FakeRegistry()
    scheduler = Scheduler(Store(tmp_path / "models"))
    context = browser.new_context()
    try:
        add_llava(registry)
        name = f"{registry.host}/library/llava:7b"
        with live_server(scheduler) as server:
            page = context.new_page()
            page.goto(server.url + "/ui")
            page.click("#tab-models")
            page.fill("#pull-name", name)
            page.check("#pull-insecure")
            page.evaluate("""() => { window.progressSeen = [];
                new MutationObserver(() => window.progressSeen.push(document.querySelector('#pull-status').textContent))
                  .observe(document.querySelector('#pull-status'), {childList: true, characterData: true, subtree: true}); }""")
            page.click("#pull-start")
            page.wait_for_function("() => document.querySelector('#pull-status').textContent.startsWith('Pulled')")
            page.locator(f'#models-table tr[data-model="{name}"]').wait_for()
            seen = page.evaluate("() => window.progressSeen")
            assert any(" of " in s for s in seen), seen  # "pulling sha256:...: 1.2 MB of 3.4 MB"
            assert page.eval_on_selector("#pull-progress", "p => p.value === p.max && p.max > 1")
            assert not page.inner_text("#pull-error")
            page.screenshot(path=str(_artifact("pulled.png")), full_page=True)
    finally:
        context.close()
        scheduler.close()
        registry.close()


def test_every_control_is_labelled_and_a_paste_attaches_an_image(page):
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
        .filter((el) => !(el.labels?.length || el.getAttribute('aria-label') || el.textContent.trim()))
        .map((el) => el.id || el.outerHTML)""")
    assert unlabelled == []
    assert page.locator("[aria-live=polite]").count() >= 3  # the status lines; each answer gets one too
    page.evaluate("""(b64) => {
        const png = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([png], 'pasted.png', {type: 'image/png'}));
        document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true}));
    }""", b64(image_bytes((3, 2))))
    assert "pasted.png" in page.inner_text("#ask-previews")
    assert page.locator("#ask-previews img").get_attribute("alt") == "preview of pasted.png"
