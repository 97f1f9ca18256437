"""The web UI: in a real browser (Debian's chromium driven by playwright), and over plain HTTP.

The browser test saves a screenshot of the overview page to its tmp dir; with
``PYDFS_UPDATE_SCREENSHOT=1`` it also refreshes ``docs/ui-overview.png`` for the README.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pydfs import Client
from pydfs.cluster import LocalCluster
from tests.conftest import BLOCK_SIZE

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "ui-overview.png"


@pytest.fixture
def page() -> Iterator[Any]:
    """A chromium page. Function-scoped: playwright's sync API keeps an event loop running in
    this thread while it is open, which other (asyncio) tests must not meet."""
    if not CHROMIUM.exists():
        pytest.skip(f"the browser test needs Debian's chromium at {CHROMIUM} (CI installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 860}, accept_downloads=True
            )
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def row(page: Any, name: str) -> Any:
    return page.locator(f'table.listing tr[data-name="{name}"]')


def test_browse_upload_download_mkdir_delete(
    cluster_factory: Callable[..., LocalCluster], page: Any, tmp_path: Path
) -> None:
    # A cluster of its own, with set capacities: the screenshot shows the same numbers anywhere.
    url = cluster_factory(3, capacity=4 * 1024**3).url
    with Client(url, user="alice") as fs:
        fs.mkdir("/webui/photos", parents=True)
        fs.write_bytes("/webui/photos/old.txt", b"old news")

    # The overview links to the file browser.
    page.goto(url + "/")
    assert page.locator("h1").inner_text() == "Cluster overview"
    assert "3 live" in page.locator(".card", has_text="Data nodes").inner_text()
    page.get_by_role("link", name="Browse files").click()
    page.wait_for_url(re.compile(r"/ui/browse\?path=/$"))

    # Into the directory made beforehand.
    row(page, "webui").get_by_role("link", name="webui").click()
    row(page, "photos").get_by_role("link", name="photos").click()
    page.wait_for_url(re.compile(r"path=/webui/photos$"))
    assert page.locator("nav.crumbs").inner_text() == "root/webui/photos"
    assert row(page, "old.txt").count() == 1

    # Upload a file of several blocks through the form; it is listed.
    data = os.urandom(2 * BLOCK_SIZE + 12345)
    local = tmp_path / "holiday pic.bin"
    local.write_bytes(data)
    page.set_input_files("input[type=file]", str(local))
    page.get_by_role("button", name="Upload", exact=True).click()
    page.wait_for_url(re.compile(r"path=/webui/photos$"))
    uploaded = row(page, "holiday pic.bin")
    assert uploaded.count() == 1
    assert "file" in uploaded.inner_text()
    assert "web" in uploaded.inner_text()  # the UI's own user owns it
    with Client(url) as fs:
        assert fs.read_bytes("/webui/photos/holiday pic.bin") == data

    # Download it again: the same bytes, under its own name.
    with page.expect_download() as info:
        uploaded.get_by_role("link", name="Download").click()
    download = info.value
    assert download.suggested_filename == "holiday pic.bin"
    assert Path(download.path()).read_bytes() == data

    # Make a directory.
    page.get_by_placeholder("new directory name").fill("albums")
    page.get_by_role("button", name="Make directory").click()
    page.wait_for_url(re.compile(r"path=/webui/photos$"))
    assert "directory" in row(page, "albums").inner_text()

    # Delete a file: dismissing the confirm() keeps it, accepting deletes it.
    messages: list[str] = []

    def dismiss(dialog: Any) -> None:
        messages.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    row(page, "old.txt").get_by_role("button", name="Delete").click()
    page.wait_for_timeout(300)  # a dismissed dialog leaves nothing to wait for
    assert messages == ["Delete the file /webui/photos/old.txt?"]
    assert row(page, "old.txt").count() == 1

    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        row(page, "old.txt").get_by_role("button", name="Delete").click()
    assert row(page, "old.txt").count() == 0
    with Client(url) as fs:
        assert not fs.exists("/webui/photos/old.txt")

    # A non-empty directory goes, with everything in it, once confirmed.
    with Client(url) as fs:
        fs.write_bytes("/webui/photos/albums/inside.txt", b"x")
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        row(page, "albums").get_by_role("button", name="Delete").click()
    assert row(page, "albums").count() == 0
    with Client(url) as fs:
        assert not fs.exists("/webui/photos/albums")

    # A file's page lists its blocks and where their replicas are.
    uploaded.get_by_role("link", name="holiday pic.bin").click()
    assert page.locator("table.listing tbody tr").count() == 3
    page.screenshot(path=str(tmp_path / "ui-file.png"), full_page=True)

    # The overview now has something to show: the screenshot for the README.
    page.goto(url + "/")
    page.get_by_role("link", name="Data nodes").first.click()
    assert page.locator("table.listing tbody tr").count() == 3
    page.goto(url + "/")
    shot = tmp_path / "ui-overview.png"
    page.screenshot(path=str(shot), full_page=True)
    page.goto(url + "/ui/browse?path=/webui/photos")
    page.screenshot(path=str(tmp_path / "ui-browse.png"), full_page=True)
    response = page.goto(url + "/ui/browse?path=/webui/%00")
    assert response is not None and response.status == 400
    assert "control character" in page.locator(".error-box").inner_text()
    page.screenshot(path=str(tmp_path / "ui-error.png"), full_page=True)
    if os.environ.get("PYDFS_UPDATE_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)


# --- plain HTTP -----------------------------------------------------------------------------


def fetch(url: str, data: dict[str, str] | None = None) -> tuple[int, str]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with urllib.request.urlopen(url, body, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def assert_error_page(status: int, text: str, expected: int, words: str) -> None:
    assert status == expected, text
    assert text.startswith("<!doctype html>")
    message = re.search(r'class="message">([^<]*)<', text)
    assert words in (message.group(1) if message else text), text
    assert "Traceback" not in text


@pytest.mark.parametrize(
    "query, status, words",
    [
        ("path=%00", 400, "control character"),
        ("path=/a/%01b", 400, "control character"),
        ("path=" + "x" * 300, 400, "longer than 255 bytes"),
        ("path=", 400, "empty path"),
        ("path=/no/such/dir", 404, "no such file or directory"),
    ],
)
def test_bad_browse_paths_get_a_readable_page(
    shared_cluster: LocalCluster, query: str, status: int, words: str
) -> None:
    code, text = fetch(f"{shared_cluster.url}/ui/browse?{query}")
    assert_error_page(code, text, status, words)
    assert "Bad request" in text or "Not found" in text


def test_bad_form_input_gets_a_readable_page(shared_cluster: LocalCluster) -> None:
    url = shared_cluster.url
    with Client(url) as fs:
        fs.mkdir("/webforms", parents=True)
        fs.write_bytes("/webforms/f", b"data")
        fs.mkdir("/webforms/full")
        fs.write_bytes("/webforms/full/g", b"data")

    def post(route: str, **data: str) -> tuple[int, str]:
        return fetch(f"{url}{route}", data)

    assert_error_page(*post("/ui/mkdir", dir="/webforms", name="  "), 400, "enter a name")
    assert_error_page(*post("/ui/mkdir", dir="/webforms", name="f"), 409, "exists")
    assert_error_page(*post("/ui/mkdir", dir="/nope", name="x"), 404, "no such file")
    assert_error_page(*post("/ui/mkdir", dir="/webforms", name="f/x"), 409, "not a directory")
    assert_error_page(*post("/ui/mkdir", dir="/webforms"), 400, "missing form field")
    assert_error_page(*post("/ui/delete", path="/", confirmed="1"), 400, "root directory")
    assert_error_page(
        *post("/ui/delete", path="/webforms/\x00", confirmed="1"), 400, "control character"
    )
    assert_error_page(*post("/ui/delete", path="/webforms/full", confirmed="1"), 409, "not empty")
    assert_error_page(*post("/ui/upload?dir=/webforms", name="x"), 400, "multipart/form-data")
    assert_error_page(*post("/ui/upload?dir=/webforms/f"), 409, "not a directory")
    assert_error_page(*post("/ui/upload"), 400, "missing query parameter")
    assert_error_page(*fetch(f"{url}/ui/download?path=/webforms"), 409, "is a directory")
    assert_error_page(*fetch(f"{url}/ui/download?path=/webforms/zz"), 404, "no such file")

    # Without the page's script, a delete asks on a page of its own first.
    code, text = post("/ui/delete", path="/webforms/f")
    assert code == 200 and "Delete the file /webforms/f?" in text
    with Client(url) as fs:
        assert fs.exists("/webforms/f")
    code, text = post("/ui/delete", path="/webforms/full", recursive="1", confirmed="1")
    assert code == 200 and "/webforms/full" not in text.split("<table", 1)[-1]
    with Client(url) as fs:
        assert [e.name for e in fs.ls("/webforms")] == ["f"]


def test_names_are_escaped(shared_cluster: LocalCluster) -> None:
    with Client(shared_cluster.url) as fs:
        fs.mkdir("/webesc", parents=True)
        fs.write_bytes("/webesc/<b>&\"'.txt", b"x")
    code, text = fetch(f"{shared_cluster.url}/ui/browse?path=/webesc")
    assert code == 200
    assert "<b>&" not in text
    assert "&lt;b&gt;&amp;&quot;&#x27;.txt" in text


def test_pages_and_static_files(shared_cluster: LocalCluster) -> None:
    url = shared_cluster.url
    for route, words in [
        ("/", "Cluster overview"),
        ("/ui/datanodes", "Last heartbeat"),
        ("/ui/static/ui.css", "--accent"),
        ("/ui/static/ui.js", "confirm"),
    ]:
        code, text = fetch(url + route)
        assert code == 200 and words in text, route
    assert_error_page(*fetch(url + "/ui/static/secret.txt"), 404, "no static file")


def test_form_upload_and_download_over_http(shared_cluster: LocalCluster) -> None:
    with Client(shared_cluster.url) as fs:
        fs.mkdir("/webhttp", parents=True)
    asyncio.run(form_upload_and_download(shared_cluster.url))


async def form_upload_and_download(url: str) -> None:
    import aiohttp

    def form(*files: tuple[str, bytes], overwrite: bool = False) -> aiohttp.FormData:
        # As browsers send them: multipart, with names in raw UTF-8.
        data = aiohttp.FormData(quote_fields=False, default_to_multipart=True)
        if overwrite:
            data.add_field("overwrite", "1")
        for name, body in files:
            data.add_field("file", body, filename=name)
        return data

    big = os.urandom(BLOCK_SIZE + 1)
    async with aiohttp.ClientSession() as session:
        upload = f"{url}/ui/upload?dir=/webhttp"
        resp = await session.post(upload, data=form(("empty", b""), ("Grüße €.bin", big)))
        async with resp:
            assert resp.status == 200 and resp.url.path == "/ui/browse"  # after the redirect
        async with session.post(upload, data=form(("empty", b"again"))) as resp:
            assert resp.status == 409 and "replace existing" in await resp.text()
        async with session.post(upload, data=form(("empty", b"again"), overwrite=True)) as resp:
            assert resp.status == 200, await resp.text()
        async with session.post(upload, data=form(overwrite=True)) as resp:
            assert resp.status == 400 and "choose a file" in await resp.text()

        download = f"{url}/ui/download"
        async with session.get(download, params={"path": "/webhttp/Grüße €.bin"}) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == str(len(big))
            assert (
                "filename*=UTF-8''Gr%C3%BC%C3%9Fe%20%E2%82%AC.bin"
                in resp.headers["Content-Disposition"]
            )
            assert await resp.read() == big
        async with session.get(download, params={"path": "/webhttp/empty"}) as resp:
            assert resp.status == 200 and await resp.read() == b"again"
