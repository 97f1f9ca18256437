"""The web UI: in a real browser (Debian's chromium driven by playwright), and over plain HTTP.

Every page needs a signed-in user: the browser test signs in through the form, the HTTP tests
post the sign-in form and send the session cookie (``WebUser``) and the page's CSRF token.

The browser test saves screenshots of its pages to its tmp dir; with
``PYDFS_UPDATE_SCREENSHOT=1`` it also refreshes ``docs/ui-overview.png`` and the file browser's
``docs/web-ui.png`` for the README.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import ssl
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, cast

import pytest

from pydfs import tokens
from pydfs.cluster import LocalCluster
from pydfs.namenode.web import sessions
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
DOCS = Path(__file__).resolve().parents[2] / "docs"
DOCS_SCREENSHOT = DOCS / "ui-overview.png"
DOCS_BROWSER_SCREENSHOT = DOCS / "web-ui.png"
PHONE = {"width": 400, "height": 800}
COOKIE = sessions.COOKIE


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


def fits(page: Any) -> bool:
    """Nothing sticks out sideways: the page does not scroll horizontally, nor do the header
    or a directory listing reach past the window's right edge."""
    return bool(
        page.evaluate(
            """() => {
              const width = window.innerWidth;
              const parts = document.querySelectorAll("header, table.entries, main");
              return document.documentElement.scrollWidth <= width &&
                Array.from(parts).every((e) => e.getBoundingClientRect().right <= width);
            }"""
        )
    )


def sign_in_with_the_form(page: Any, token: str) -> None:
    page.get_by_label("Your pydfs token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def test_browse_upload_download_mkdir_delete(
    cluster_factory: Callable[..., LocalCluster], page: Any, tmp_path: Path
) -> None:
    # A cluster of its own, with set capacities: the screenshot shows the same numbers anywhere.
    cluster = cluster_factory(3, capacity=4 * 1024**3)
    url = cluster.url
    with cluster.client() as fs:
        fs.mkdir("/webui/photos", parents=True)
        fs.write_bytes("/webui/photos/old.txt", b"old news")

    # Nothing shows before signing in: the overview sends the browser to the sign-in form.
    page.goto(url + "/")
    page.wait_for_url(re.compile(r"/ui/login\?next=%2F$"))
    assert page.locator("h1").inner_text() == "Sign in"
    assert page.locator("header nav a").count() == 0
    sign_in_with_the_form(page, "pydfs_not-a-token")
    assert "not valid" in page.locator(".login-box .message").inner_text()
    assert page.context.cookies() == []
    sign_in_with_the_form(page, cluster.admin_token)
    page.wait_for_url(url + "/")
    [cookie] = page.context.cookies()
    assert cookie["name"] == COOKIE and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cluster.admin_token not in cookie["value"]
    assert page.locator("header .user").inner_text().split() == ["admin", "admin"]  # + badge

    # The overview links to the file browser, which opens at the user's home.
    assert page.locator("h1").inner_text() == "Cluster overview"
    assert "3 live" in page.locator(".card", has_text="Data nodes").inner_text()
    page.get_by_role("link", name="Browse files").click()
    page.wait_for_url(re.compile(r"/ui/browse\?path=/user/admin$"))
    page.locator("nav.crumbs").get_by_role("link", name="root").click()
    page.wait_for_url(re.compile(r"/ui/browse\?path=/$"))
    # /user and /tmp hold every user's files: no delete button for them.
    for name in ("user", "tmp"):
        assert row(page, name).count() == 1
        assert row(page, name).get_by_role("button", name="Delete").count() == 0
    assert row(page, "webui").get_by_role("button", name="Delete").count() == 1

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
    # The upload is confirmed first: dismissed, nothing is sent.
    page.set_input_files("input[type=file]", str(local))
    asked: list[str] = []

    def answer(accept: bool) -> Callable[[Any], None]:
        def handle(dialog: Any) -> None:
            asked.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()

        return handle

    page.once("dialog", answer(False))
    page.get_by_role("button", name="Upload", exact=True).click()
    page.wait_for_timeout(300)  # a dismissed dialog leaves nothing to wait for
    assert row(page, "holiday pic.bin").count() == 0
    page.once("dialog", answer(True))
    with page.expect_navigation():
        page.get_by_role("button", name="Upload", exact=True).click()
    assert asked == 2 * [
        "Upload 1 file (holiday pic.bin) to /webui/photos? "
        "A file of the same name there stops the upload."
    ]
    page.wait_for_url(re.compile(r"path=/webui/photos$"))
    uploaded = row(page, "holiday pic.bin")
    assert uploaded.count() == 1
    assert "file" in uploaded.inner_text()
    assert "admin" in uploaded.inner_text()  # the signed-in user owns it
    with cluster.client() as fs:
        assert fs.read_bytes("/webui/photos/holiday pic.bin") == data
        status = fs.info("/webui/photos/holiday pic.bin")
        assert status.owner == "admin"
    assert stat.filemode(stat.S_IFREG | status.mode) in uploaded.inner_text()  # -rw-r--r--
    assert uploaded.locator("td[data-label=group]").inner_text() == status.group

    # Download it again: the same bytes, under its own name.
    with page.expect_download() as info:
        uploaded.get_by_role("link", name="Download").click()
    download = info.value
    assert download.suggested_filename == "holiday pic.bin"
    assert Path(download.path()).read_bytes() == data

    # Make a directory: the form says what it makes.
    page.get_by_placeholder("new directory name").fill("albums")
    assert page.locator("output.preview").inner_text() == "makes /webui/photos/albums"
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
    with cluster.client() as fs:
        assert not fs.exists("/webui/photos/old.txt")

    # A non-empty directory goes, with everything in it, once confirmed.
    with cluster.client() as fs:
        fs.write_bytes("/webui/photos/albums/inside.txt", b"x")
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        row(page, "albums").get_by_role("button", name="Delete").click()
    assert row(page, "albums").count() == 0
    with cluster.client() as fs:
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

    # Signing out ends the session; signing in again returns to the page asked for.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/ui/login$"))
    assert page.context.cookies() == []
    page.goto(url + "/ui/browse?path=/webui/photos")
    page.wait_for_url(re.compile(r"/ui/login\?next="))
    page.screenshot(path=str(tmp_path / "ui-login.png"), full_page=True)
    sign_in_with_the_form(page, cluster.admin_token)
    page.wait_for_url(re.compile(r"/ui/browse\?path=/webui/photos$"))
    assert row(page, "holiday pic.bin").count() == 1
    with cluster.client() as fs:  # something to show in the file browser's screenshot
        fs.mkdir("/webui/photos/2025")
        fs.write_bytes("/webui/photos/notes.txt", b"where and when\n" * 300)
        fs.chmod("/webui/photos/notes.txt", 0o600)
    page.goto(url + "/ui/browse?path=/webui/photos")
    browser_shot = tmp_path / "web-ui.png"
    page.screenshot(path=str(browser_shot), full_page=True)

    # On a phone-sized screen every page fits the width; a directory's rows stack, keeping
    # every field.
    page.set_viewport_size(PHONE)
    for route in [
        "/ui/browse?path=/webui/photos",
        "/ui/browse?path=/",
        "/ui/browse?path=/webui/photos/holiday%20pic.bin",
        "/",
        "/ui/datanodes",
    ]:
        page.goto(url + route)
        assert fits(page), route
        page.screenshot(path=str(tmp_path / f"phone-{len(route)}.png"), full_page=True)
    page.goto(url + "/ui/browse?path=/webui/photos")
    for label in ("owner", "group"):
        assert row(page, "holiday pic.bin").locator(f"td[data-label={label}]").is_visible()
    assert row(page, "holiday pic.bin").get_by_role("button", name="Delete").is_visible()
    if os.environ.get("PYDFS_UPDATE_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)
        shutil.copyfile(browser_shot, DOCS_BROWSER_SCREENSHOT)


# --- plain HTTP -----------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: bytes
    headers: Message

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    @property
    def cookies(self) -> list[str]:
        return self.headers.get_all("Set-Cookie") or []


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx comes back as it is


def fetch(
    url: str,
    data: dict[str, str] | bytes | None = None,
    *,
    cookie: str | None = None,
    headers: dict[str, str] | None = None,
    follow: bool = True,
    context: ssl.SSLContext | None = None,
) -> Reply:
    """GET (or POST *data*: a form, or a body whose Content-Type is in *headers*) with urllib."""
    body = urllib.parse.urlencode(data).encode() if isinstance(data, dict) else data
    request = urllib.request.Request(url, body, headers=dict(headers or {}))
    if cookie:
        request.add_header("Cookie", cookie)
    handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPSHandler(context=context)]
    if not follow:
        handlers.append(_NoRedirects())
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=30) as resp:
            return Reply(resp.status, resp.read(), resp.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return Reply(exc.code, exc.read(), exc.headers)


def multipart(*fields: tuple[str, str | tuple[str, bytes]]) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body, fields in the order given (``(name, (filename, data))`` for a
    file), and its Content-Type header."""
    boundary = uuid.uuid4().hex
    out = b""
    for name, value in fields:
        if isinstance(value, tuple):
            filename, data = value
            head = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            head += "Content-Type: application/octet-stream\r\n"
        else:
            head, data = f'Content-Disposition: form-data; name="{name}"\r\n', value.encode()
        out += f"--{boundary}\r\n{head}\r\n".encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


CSRF_FIELD = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def session_cookie(reply: Reply) -> str:
    """``NAME=VALUE`` of the session cookie *reply* sets."""
    [header] = [c for c in reply.cookies if c.startswith(COOKIE + "=")]
    return f"{COOKIE}={SimpleCookie(header)[COOKIE].value}"


def clears_the_session(reply: Reply) -> bool:
    for header in reply.cookies:
        morsel = SimpleCookie(header).get(COOKIE)
        if morsel is not None and morsel.value == "" and morsel["max-age"] == "0":
            return True
    return False


@dataclass
class WebUser:
    """A signed-in browser, as far as the server can tell: the session cookie and CSRF token."""

    url: str
    cookie: str
    csrf: str
    context: ssl.SSLContext | None = None

    def get(self, route: str, **kwargs: Any) -> Reply:
        return fetch(self.url + route, cookie=self.cookie, context=self.context, **kwargs)

    def post(self, route: str, follow: bool = True, **data: str | None) -> Reply:
        """Post a form with this session's CSRF token (``csrf=None`` leaves it out)."""
        form = {k: v for k, v in {"csrf": self.csrf, **data}.items() if v is not None}
        return fetch(
            self.url + route, form, cookie=self.cookie, follow=follow, context=self.context
        )

    def upload(self, route: str, *fields: tuple[str, str | tuple[str, bytes]]) -> Reply:
        body, headers = multipart(*fields)
        return fetch(
            self.url + route, body, cookie=self.cookie, headers=headers, context=self.context
        )


def sign_in(url: str, token: str, context: ssl.SSLContext | None = None) -> WebUser:
    reply = fetch(url + "/ui/login", {"token": token, "next": "/"}, follow=False, context=context)
    assert reply.status == 303 and reply.location == "/", reply.text
    cookie = session_cookie(reply)
    page = fetch(url + "/ui/browse?path=/", cookie=cookie, context=context)
    assert page.status == 200, page.text
    match = CSRF_FIELD.search(page.text)
    assert match, page.text
    return WebUser(url, cookie, match.group(1), context)


@pytest.fixture(scope="module")
def admin(shared_cluster: LocalCluster) -> WebUser:
    return sign_in(shared_cluster.url, shared_cluster.admin_token)


def assert_error_page(reply: Reply, expected: int, words: str) -> None:
    status, text = reply.status, reply.text
    assert status == expected, text
    assert text.startswith("<!doctype html>")
    message = re.search(r'class="message">([^<]*)<', text)
    assert words in (message.group(1) if message else text), text
    assert "Traceback" not in text


def assert_sent_to_sign_in(reply: Reply, next_: str | None = None) -> None:
    assert reply.status == 303, reply.text
    target = urllib.parse.urlsplit(reply.location)
    assert target.path == "/ui/login", reply.location
    expected = {"next": [next_]} if next_ else {}
    assert urllib.parse.parse_qs(target.query) == expected, reply.location


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
    admin: WebUser, query: str, status: int, words: str
) -> None:
    reply = admin.get(f"/ui/browse?{query}")
    assert_error_page(reply, status, words)
    assert "Bad request" in reply.text or "Not found" in reply.text


def test_bad_form_input_gets_a_readable_page(shared_cluster: LocalCluster, admin: WebUser) -> None:
    with shared_cluster.client() as fs:
        fs.mkdir("/webforms", parents=True)
        fs.write_bytes("/webforms/f", b"data")
        fs.mkdir("/webforms/full")
        fs.write_bytes("/webforms/full/g", b"data")

    post = admin.post
    assert_error_page(post("/ui/mkdir", dir="/webforms", name="  "), 400, "enter a name")
    assert_error_page(post("/ui/mkdir", dir="/webforms", name="f"), 409, "exists")
    assert_error_page(post("/ui/mkdir", dir="/nope", name="x"), 404, "no such file")
    assert_error_page(post("/ui/mkdir", dir="/webforms", name="f/x"), 409, "not a directory")
    assert_error_page(post("/ui/mkdir", dir="/webforms"), 400, "missing form field")
    for outside in ("../webescaped", "a/../../webescaped", "/webescaped"):
        assert_error_page(post("/ui/mkdir", dir="/webforms", name=outside), 400, "stays in")
    assert_error_page(post("/ui/delete", path="/", confirmed="1"), 400, "root directory")
    assert_error_page(
        post("/ui/delete", path="/webforms/\x00", confirmed="1"), 400, "control character"
    )
    assert_error_page(post("/ui/delete", path="/webforms/full", confirmed="1"), 409, "not empty")
    assert_error_page(post("/ui/upload?dir=/webforms", name="x"), 400, "multipart/form-data")
    assert_error_page(post("/ui/upload?dir=/webforms/f"), 409, "not a directory")
    assert_error_page(post("/ui/upload"), 400, "missing query parameter")
    assert_error_page(admin.get("/ui/download?path=/webforms"), 409, "is a directory")
    assert_error_page(admin.get("/ui/download?path=/webforms/zz"), 404, "no such file")

    # Without the page's script, a delete asks on a page of its own first (a form with the
    # session's CSRF token).
    reply = post("/ui/delete", path="/webforms/f")
    assert reply.status == 200 and "Delete the file /webforms/f?" in reply.text
    assert CSRF_FIELD.findall(reply.text) == [admin.csrf, admin.csrf]  # + the sign-out form
    with shared_cluster.client() as fs:
        assert fs.exists("/webforms/f")
    reply = post("/ui/delete", path="/webforms/full", recursive="1", confirmed="1")
    assert reply.status == 200 and "/webforms/full" not in reply.text.split("<table", 1)[-1]
    with shared_cluster.client() as fs:
        assert [e.name for e in fs.ls("/webforms")] == ["f"]


def test_names_are_escaped(shared_cluster: LocalCluster, admin: WebUser) -> None:
    with shared_cluster.client() as fs:
        fs.mkdir("/webesc", parents=True)
        fs.write_bytes("/webesc/<b>&\"'.txt", b"x")
    reply = admin.get("/ui/browse?path=/webesc")
    assert reply.status == 200
    assert "<b>&" not in reply.text
    assert "&lt;b&gt;&amp;&quot;&#x27;.txt" in reply.text


def test_pages_and_static_files(shared_cluster: LocalCluster, admin: WebUser) -> None:
    for route, words in [
        ("/", "Cluster overview"),
        ("/ui/datanodes", "Last heartbeat"),
    ]:
        reply = admin.get(route)
        assert reply.status == 200 and words in reply.text, route
        assert reply.headers["Cache-Control"] == "no-store"
        assert reply.headers["X-Frame-Options"] == "DENY"
        # The header names the user and offers to sign out.
        assert '<span class="user" title="signed in as admin">admin' in reply.text
        assert 'action="/ui/logout"' in reply.text
    # Static files need no session.
    for route, words in [("/ui/static/ui.css", "--accent"), ("/ui/static/ui.js", "confirm")]:
        reply = fetch(shared_cluster.url + route)
        assert reply.status == 200 and words in reply.text, route
    assert_error_page(fetch(shared_cluster.url + "/ui/static/secret.txt"), 404, "no static file")


def test_form_upload_and_download_over_http(shared_cluster: LocalCluster) -> None:
    with shared_cluster.client() as fs:
        fs.mkdir("/webhttp", parents=True)
    asyncio.run(form_upload_and_download(shared_cluster.url, shared_cluster.admin_token))


async def form_upload_and_download(url: str, token: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.post(f"{url}/ui/login", data={"token": token}) as resp:
            assert resp.status == 200 and resp.url.path == "/"  # signed in, at the overview
            match = CSRF_FIELD.search(await resp.text())
            assert match
            csrf = match.group(1)

        def form(*files: tuple[str, bytes], overwrite: bool = False) -> aiohttp.FormData:
            # As browsers send them: multipart, with names in raw UTF-8, the csrf field first.
            data = aiohttp.FormData(quote_fields=False, default_to_multipart=True)
            data.add_field("csrf", csrf)
            if overwrite:
                data.add_field("overwrite", "1")
            for name, body in files:
                data.add_field("file", body, filename=name)
            return data

        big = os.urandom(BLOCK_SIZE + 1)
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


# --- signing in, sessions, CSRF, permissions ------------------------------------------------


def test_signed_out_requests_are_sent_to_sign_in_and_change_nothing(
    shared_cluster: LocalCluster,
) -> None:
    url = shared_cluster.url
    with shared_cluster.client() as fs:
        fs.mkdir("/websignedout/dir", parents=True)
        fs.write_bytes("/websignedout/f", b"keep me")

    for route in [
        "/",
        "/ui/datanodes",
        "/ui/browse?path=/websignedout",
        "/ui/download?path=/websignedout/f",
    ]:
        reply = fetch(url + route, follow=False)
        assert_sent_to_sign_in(reply, route)
        assert "keep me" not in reply.text and "websignedout" not in reply.text
    # Followed, the redirect shows the sign-in form (which returns to the page afterwards).
    reply = fetch(url + "/ui/browse?path=/websignedout")
    assert reply.status == 200 and 'type="password" id="token" name="token"' in reply.text
    assert 'name="next" value="/ui/browse?path=/websignedout"' in reply.text
    assert 'data-name="f"' not in reply.text

    # Forms posted without a valid session do nothing: no cookie, a made-up one, or the bearer
    # token itself as the cookie (the cookie is not the token).
    forged = [None, f"{COOKIE}=9999999999.AAAA", f"{COOKIE}={shared_cluster.admin_token}"]
    for cookie in forged:
        for route, form in [
            ("/ui/delete", {"path": "/websignedout/f", "confirmed": "1"}),
            ("/ui/delete", {"path": "/websignedout/dir", "recursive": "1", "confirmed": "1"}),
            ("/ui/mkdir", {"dir": "/websignedout", "name": "new"}),
            ("/ui/logout", {}),
        ]:
            reply = fetch(url + route, form, cookie=cookie, follow=False)
            assert_sent_to_sign_in(reply)
            if cookie:  # a bad cookie is cleared
                assert clears_the_session(reply), reply.cookies
        body, headers = multipart(("file", ("new", b"x")))
        reply = fetch(
            url + "/ui/upload?dir=/websignedout", body, cookie=cookie, headers=headers, follow=False
        )
        assert_sent_to_sign_in(reply)
    with shared_cluster.client() as fs:
        assert sorted(e.name for e in fs.ls("/websignedout")) == ["dir", "f"]
        assert fs.read_bytes("/websignedout/f") == b"keep me"


def test_sessions_are_sealed_and_expire(shared_cluster: LocalCluster) -> None:
    url = shared_cluster.url
    secret = tokens.read_secret(shared_cluster.namenode.data_dir / tokens.SECRET_FILE)
    made = sessions.Sessions(secret, cast(Any, None))  # sealing needs only the secret
    fresh = made.seal(shared_cluster.admin_token)
    stale = made.seal(shared_cluster.admin_token, now=time.time() - sessions.LIFETIME - 5)
    assert fetch(url + "/", cookie=f"{COOKIE}={fresh}").status == 200
    assert_sent_to_sign_in(fetch(url + "/", cookie=f"{COOKIE}={stale}", follow=False), "/")
    # The expiry cannot be moved: it is bound to the sealed token.
    moved = str(int(time.time()) + 3600) + "." + stale.split(".", 1)[1]
    assert_sent_to_sign_in(fetch(url + "/", cookie=f"{COOKIE}={moved}", follow=False), "/")
    # Nor can a bit of the box change.
    head, box = fresh.rsplit(".", 1)
    flipped = f"{head}.{box[:-2]}{'A' if box[-2] != 'A' else 'B'}{box[-1]}"
    assert_sent_to_sign_in(fetch(url + "/", cookie=f"{COOKIE}={flipped}", follow=False), "/")
    # A box sealed with another secret opens nowhere.
    other = sessions.Sessions(b"x" * 64, cast(Any, None)).seal(shared_cluster.admin_token)
    assert_sent_to_sign_in(fetch(url + "/", cookie=f"{COOKIE}={other}", follow=False), "/")


def test_sign_in_checks_the_token_and_sets_a_strict_cookie(shared_cluster: LocalCluster) -> None:
    url = shared_cluster.url
    login = url + "/ui/login"
    for token, words in [
        ("pydfs_wrong", "That token is not valid"),
        (shared_cluster.admin_token + "x", "That token is not valid"),
        ("", "Enter your token"),
    ]:
        reply = fetch(login, {"token": token, "next": "/ui/datanodes"}, follow=False)
        assert reply.status == 401, reply.text
        assert words in reply.text and 'type="password"' in reply.text
        assert 'name="next" value="/ui/datanodes"' in reply.text  # kept for the next try
        assert reply.cookies == []

    reply = fetch(
        login, {"token": shared_cluster.admin_token, "next": "/ui/datanodes"}, follow=False
    )
    assert reply.status == 303 and reply.location == "/ui/datanodes"
    [header] = reply.cookies
    morsel = SimpleCookie(header)[COOKIE]
    assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/"
    assert not morsel["secure"]  # plain HTTP here; see the TLS test
    assert shared_cluster.admin_token not in header
    assert tokens.hash_user_token(shared_cluster.admin_token) not in header
    assert fetch(url + "/ui/datanodes", cookie=session_cookie(reply)).status == 200

    # After signing in, only a path of this site is followed.
    for next_ in [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "evil.example",
        "",
        "/ui/login?next=/",
    ]:
        reply = fetch(login, {"token": shared_cluster.admin_token, "next": next_}, follow=False)
        assert reply.status == 303 and reply.location == "/", next_
    reply = fetch(login + "?next=//evil.example")
    assert 'name="next" value="/"' in reply.text

    # A sign-in form posted by another site's page is refused.
    reply = fetch(
        login,
        {"token": shared_cluster.admin_token},
        headers={"Origin": "http://evil.example"},
        follow=False,
    )
    assert_error_page(reply, 403, "another site")
    assert reply.cookies == []
    own = fetch(login, {"token": shared_cluster.admin_token}, headers={"Origin": url}, follow=False)
    assert own.status == 303


def test_forms_need_the_session_csrf_token(shared_cluster: LocalCluster) -> None:
    url = shared_cluster.url
    with shared_cluster.client() as fs:
        fs.mkdir("/webcsrf/dir", parents=True)
        fs.write_bytes("/webcsrf/f", b"keep")
    me = sign_in(url, shared_cluster.admin_token)
    other = sign_in(url, shared_cluster.admin_token)  # another session of the same user
    assert other.csrf != me.csrf

    for csrf in [None, "", "0" * 64, other.csrf, me.csrf.upper()]:
        assert_error_page(
            me.post("/ui/delete", csrf=csrf, path="/webcsrf/f", confirmed="1"), 403, "reload"
        )
        assert_error_page(
            me.post("/ui/delete", csrf=csrf, path="/webcsrf/dir", recursive="1", confirmed="1"),
            403,
            "reload",
        )
        assert_error_page(me.post("/ui/mkdir", csrf=csrf, dir="/webcsrf", name="n"), 403, "reload")
        assert_error_page(me.post("/ui/logout", csrf=csrf), 403, "reload")
        fields: list[tuple[str, str | tuple[str, bytes]]] = [("file", ("up", b"x"))]
        if csrf is not None:
            fields.insert(0, ("csrf", csrf))
        assert_error_page(me.upload("/ui/upload?dir=/webcsrf", *fields), 403, "reload")
    # The right token must come first in an upload: nothing is read before it.
    late = me.upload("/ui/upload?dir=/webcsrf", ("file", ("up", b"x")), ("csrf", me.csrf))
    assert_error_page(late, 403, "reload")
    # The right token from another site's page (a browser names it in Origin) is refused too.
    reply = fetch(
        url + "/ui/delete",
        {"csrf": me.csrf, "path": "/webcsrf/f", "confirmed": "1"},
        cookie=me.cookie,
        headers={"Origin": "http://evil.example"},
    )
    assert_error_page(reply, 403, "another site")
    with shared_cluster.client() as fs:
        assert sorted(e.name for e in fs.ls("/webcsrf")) == ["dir", "f"]
    assert me.get("/ui/browse?path=/webcsrf").status == 200  # still signed in

    # With the token, each form works.
    assert me.post("/ui/mkdir", dir="/webcsrf", name="n").status == 200
    assert (
        me.upload("/ui/upload?dir=/webcsrf", ("csrf", me.csrf), ("file", ("up", b"x"))).status
        == 200
    )
    assert me.post("/ui/delete", path="/webcsrf/f", confirmed="1").status == 200
    with shared_cluster.client() as fs:
        assert sorted(e.name for e in fs.ls("/webcsrf")) == ["dir", "n", "up"]
    reply = me.post("/ui/logout", follow=False)
    assert reply.status == 303 and reply.location == "/ui/login"
    assert clears_the_session(reply)


def test_a_user_has_their_own_rights_only(shared_cluster: LocalCluster, admin: WebUser) -> None:
    url = shared_cluster.url
    with shared_cluster.client() as fs:
        bob_token = fs.add_user("webbob")
        fs.mkdir("/user/admin/private")
        fs.chmod("/user/admin/private", 0o700)
        fs.write_bytes("/user/admin/private/diary", b"dear diary")
        fs.write_bytes("/tmp/webbob-unreadable", b"top secret")
        fs.chmod("/tmp/webbob-unreadable", 0o600)
        fs.write_bytes("/tmp/webbob-not-his", b"admin's")
    bob = sign_in(url, bob_token)
    assert '<span class="user" title="signed in as webbob">webbob</span>' in bob.get("/").text

    # Another user's private directory, and what is in it, are closed to bob...
    for route in [
        "/ui/browse?path=/user/admin/private",
        "/ui/browse?path=/user/admin/private/diary",
        "/ui/download?path=/user/admin/private/diary",
    ]:
        reply = bob.get(route)
        assert_error_page(reply, 403, "permission denied")
        assert 'data-name="diary"' not in reply.text
    # ...but not to its owner.
    reply = admin.get("/ui/browse?path=/user/admin/private")
    assert reply.status == 200 and 'data-name="diary"' in reply.text

    # A file bob may see but not read: its page shows, its bytes do not (the transfer client
    # asks the API for read tokens with bob's own token).
    assert bob.get("/ui/browse?path=/tmp/webbob-unreadable").status == 200
    reply = bob.get("/ui/download?path=/tmp/webbob-unreadable")
    assert_error_page(reply, 403, "permission denied")
    assert "top secret" not in reply.text

    # Nor may bob change what is not his.
    assert_error_page(
        bob.post("/ui/delete", path="/tmp/webbob-not-his", confirmed="1"), 403, "sticky"
    )
    assert_error_page(
        bob.post("/ui/delete", path="/user/admin/private", recursive="1", confirmed="1"),
        403,
        "permission denied",
    )
    assert_error_page(bob.post("/ui/mkdir", dir="/", name="webbob-dir"), 403, "permission denied")
    assert_error_page(
        bob.upload("/ui/upload?dir=/", ("csrf", bob.csrf), ("file", ("webbob-file", b"x"))),
        403,
        "permission denied",
    )
    with shared_cluster.client() as fs:
        assert fs.exists("/tmp/webbob-not-his") and fs.exists("/user/admin/private/diary")
        assert not fs.exists("/webbob-dir") and not fs.exists("/webbob-file")

    # In his home bob does as he likes, and what he makes is his.
    assert bob.post("/ui/mkdir", dir="/user/webbob", name="docs").status == 200
    reply = bob.upload("/ui/upload?dir=/user/webbob", ("csrf", bob.csrf), ("file", ("a", b"mine")))
    assert reply.status == 200 and 'data-name="a"' in reply.text
    assert bob.get("/ui/download?path=/user/webbob/a").body == b"mine"
    with shared_cluster.client() as fs:
        assert fs.info("/user/webbob/docs").owner == "webbob"
        assert fs.info("/user/webbob/a").owner == "webbob"
    assert bob.post("/ui/delete", path="/user/webbob/a", confirmed="1").status == 200


def test_revoked_tokens_end_their_sessions(shared_cluster: LocalCluster) -> None:
    url = shared_cluster.url
    with shared_cluster.client() as fs:
        token = fs.add_user("webcarol")
    carol = sign_in(url, token)
    assert carol.post("/ui/mkdir", dir="/user/webcarol", name="keep").status == 200

    with shared_cluster.client() as fs:
        new_token = fs.reset_token("webcarol")
    reply = carol.get("/ui/browse?path=/user/webcarol", follow=False)
    assert_sent_to_sign_in(reply, "/ui/browse?path=/user/webcarol")
    assert clears_the_session(reply)
    reply = carol.post(
        "/ui/delete", path="/user/webcarol/keep", recursive="1", confirmed="1", follow=False
    )
    assert_sent_to_sign_in(reply)
    body, headers = multipart(("csrf", carol.csrf), ("file", ("new", b"x")))
    reply = fetch(
        url + "/ui/upload?dir=/user/webcarol",
        body,
        cookie=carol.cookie,
        headers=headers,
        follow=False,
    )
    assert_sent_to_sign_in(reply)
    assert fetch(url + "/ui/login", {"token": token}, follow=False).status == 401
    with shared_cluster.client() as fs:
        assert [e.name for e in fs.ls("/user/webcarol")] == ["keep"]

    # The new token signs in; removing the user ends that session too.
    again = sign_in(url, new_token)
    assert again.get("/ui/browse?path=/user/webcarol").status == 200
    with shared_cluster.client() as fs:
        fs.remove_user("webcarol")
    assert_sent_to_sign_in(again.get("/", follow=False), "/")


def test_the_ui_over_tls(cluster_factory: Callable[..., LocalCluster]) -> None:
    """Over HTTPS the cookie is Secure, and the UI's transfer client reaches its own name node
    over HTTPS, verified with the name node's ``tls_ca``."""
    cluster = cluster_factory(2, tls=True)
    assert cluster.url.startswith("https://") and cluster.ca is not None
    context = ssl.create_default_context(cafile=str(cluster.ca))
    reply = fetch(
        cluster.url + "/ui/login", {"token": cluster.admin_token}, follow=False, context=context
    )
    morsel = SimpleCookie(reply.cookies[0])[COOKIE]
    assert morsel["secure"] and morsel["httponly"] and morsel["samesite"] == "Strict"
    me = sign_in(cluster.url, cluster.admin_token, context=context)
    data = os.urandom(BLOCK_SIZE + 7)
    reply = me.upload("/ui/upload?dir=/tmp", ("csrf", me.csrf), ("file", ("tls.bin", data)))
    assert reply.status == 200, reply.text
    assert me.get("/ui/download?path=/tmp/tls.bin").body == data
    with cluster.client() as fs:
        assert fs.read_bytes("/tmp/tls.bin") == data
        assert fs.info("/tmp/tls.bin").owner == "admin"
