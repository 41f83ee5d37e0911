"""The dashboard at `/`, in a real browser: Playwright drives Debian's chromium (headless) against a
real `mdl serve`, loads the page, finds the model listed, chats, watches the streamed answer and the
new row of the requests table, and leaves a screenshot in the test's tmp dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

pytest.importorskip("llama_cpp")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from .test_serve import Server  # noqa: E402

CHROMIUM = Path(os.environ.get("MDL_TEST_CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture(scope="module")
def server(runner_home, tmp_path_factory):
    srv = Server(runner_home, tmp_path_factory.mktemp("dashboard-serve"))
    # answers the page can count on: greedy, a few tokens (the page sends no sampling values)
    r = requests.post(srv.url + "/engines/_configure",
                      json={"model": "ai/tiny", "sampling": {"temperature": 0, "max_tokens": 12, "seed": 1}})
    assert r.status_code == 200, r.text
    yield srv
    srv.stop()


def test_other_clients_keep_their_answer_at_the_root(server):
    r = requests.get(server.url + "/")
    assert r.status_code == 200 and r.text == "mdl model runner is running\n"
    page = requests.get(server.url + "/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script src=\"/static/dashboard.js\"" in page.text and "http" not in page.text.split("<body>")[1]
    for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        r = requests.get(server.url + f"/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
    for name in ("dashboard.html", "..%2Fapp.py", "nope.js"):
        assert requests.get(server.url + f"/static/{name}").status_code == 404
    assert "innerHTML" not in requests.get(server.url + "/static/dashboard.js").text  # text only


def test_dashboard_in_a_browser(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--headless=new"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.goto(server.url + "/")
            expect = sync_api.expect
            expect(page.locator("#store tbody")).to_contain_text("ai/tiny:latest")
            expect(page.locator("#store tbody")).to_contain_text("gguf")
            expect(page.locator("#status")).to_contain_text("mdl ")
            expect(page.locator("#requests-live")).to_have_text("(live)")

            page.select_option("#chat-model", "ai/tiny:latest")
            page.fill("#chat-input", "hello from the browser")
            page.click("#chat-send")
            answer = page.locator("#transcript p.msg.done span").last
            expect(answer).not_to_be_empty(timeout=30_000)
            text = answer.text_content()
            expected = requests.post(server.url + "/v1/chat/completions", json={
                "model": "ai/tiny", "messages": [{"role": "user", "content": "hello from the browser"}]}).json()
            assert text == expected["choices"][0]["message"]["content"]  # streamed whole, configured greedy

            row = page.locator("#requests tbody tr", has_text="chat (stream)").filter(has_text="hello from the browser")
            expect(row).to_have_count(1)  # the page's own request, streamed, live in the table
            expect(row).to_contain_text("200")
            expect(row).to_contain_text(text)
            expect(page.locator("#loaded tbody")).to_contain_text("ai/tiny:latest", timeout=10_000)
            expect(page.locator("#loaded tbody")).to_contain_text("pid ")
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    assert not problems, problems
