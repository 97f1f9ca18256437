"""The web UI's file browser over plain HTTP: large directories in pages, the user's home first,
permissions shown, and no delete of /user, /tmp or a home. (The browser test, with the layout
on a phone-sized screen, is in test_web.)"""

from __future__ import annotations

import asyncio
import html
import re

import pytest

from pydfs.cluster import LocalCluster
from pydfs.namenode.web.routes import PAGE
from tests.integration.test_web import WebUser, assert_error_page, sign_in

ROW = re.compile(r'<tr data-name="([^"]*)">')
NEXT = re.compile(r'<a href="([^"]*)" rel="next">')
PREV = re.compile(r'<a href="([^"]*)" rel="prev">')


@pytest.fixture(scope="module")
def admin(shared_cluster: LocalCluster) -> WebUser:
    return sign_in(shared_cluster.url, shared_cluster.admin_token)


def names(text: str) -> list[str]:
    return [html.unescape(n) for n in ROW.findall(text)]


def link(pattern: re.Pattern[str], text: str) -> str | None:
    found = pattern.search(text)
    return html.unescape(found.group(1)) if found else None


def test_a_large_directory_comes_in_pages(shared_cluster: LocalCluster, admin: WebUser) -> None:
    count = 2 * PAGE + 50
    made = sorted(f"f{i:05d}" for i in range(count))

    async def fill() -> None:
        async with shared_cluster.async_client() as fs:
            await fs.mkdir("/webpages/big", parents=True)
            for i in range(0, count, 64):
                await asyncio.gather(*(fs.touch(f"/webpages/big/{n}") for n in made[i : i + 64]))

    asyncio.run(fill())
    first = admin.get("/ui/browse?path=/webpages/big")
    assert first.status == 200
    assert names(first.text) == made[:PAGE]
    assert link(PREV, first.text) is None
    assert f"{PAGE:,} of {count:,} entries" in first.text
    assert f"{count:,} files" in first.text  # the summary counts the whole directory

    # Following "next" shows every entry once, in name order, each page at most PAGE long;
    # an entry made meanwhile before the current page neither repeats nor shifts one.
    seen, reply, pages = names(first.text), first, 1
    with shared_cluster.client() as fs:
        fs.touch("/webpages/big/a-new-first-entry")
    while (after := link(NEXT, reply.text)) is not None:
        reply = admin.get(after)
        assert reply.status == 200
        assert 0 < len(names(reply.text)) <= PAGE
        assert len(reply.body) < 2000 * PAGE  # about 1 kB a row
        seen += names(reply.text)
        pages += 1
    assert seen == made and pages == 3

    # "previous" from the last page is the one before it.
    back = admin.get(link(PREV, reply.text) or "")
    assert names(back.text) == made[PAGE : 2 * PAGE]

    # A page past either end (a link made by hand) is not "empty": it leads back to the first.
    for beyond in ("after=zzz", "before=%20"):
        lost = admin.get(f"/ui/browse?path=/webpages/big&{beyond}")
        assert lost.status == 200 and names(lost.text) == []
        assert "is empty" not in lost.text and "go to the first page" in lost.text


def test_the_browser_opens_at_home(shared_cluster: LocalCluster, admin: WebUser) -> None:
    reply = admin.get("/ui/browse", follow=False)
    assert reply.status == 303 and reply.location == "/ui/browse?path=/user/admin"
    with shared_cluster.client() as fs:
        token = fs.add_user("webhomeless")
        fs.rmdir("/user/webhomeless")
    homeless = sign_in(shared_cluster.url, token)
    reply = homeless.get("/ui/browse", follow=False)
    assert reply.status == 303 and reply.location == "/ui/browse?path=/"
    overview = admin.get("/")
    assert 'href="/ui/browse"' in overview.text and "path=/&quot;" not in overview.text


def test_mode_and_group_are_shown(shared_cluster: LocalCluster, admin: WebUser) -> None:
    with shared_cluster.client() as fs:
        fs.mkdir("/webmodes/shared", parents=True)
        fs.write_bytes("/webmodes/notes", b"n")
        fs.chmod("/webmodes/shared", 0o1770)
        fs.chmod("/webmodes/notes", 0o640)
        fs.add_user("webgroupie", groups=["staff"])
        fs.chown("/webmodes/notes", group="staff")
    text = admin.get("/ui/browse?path=/webmodes").text
    row = {m.group(1): m.group(0) for m in re.finditer(r'<tr data-name="([^"]*)">.*?</tr>', text)}
    assert "drwxrwx--T" in row["shared"]
    assert "-rw-r-----" in row["notes"] and 'data-label="group">staff<' in row["notes"]
    page = admin.get("/ui/browse?path=/webmodes/notes").text
    assert "-rw-r-----" in page and "<th>Group</th><td>staff</td>" in page


@pytest.mark.parametrize("path", ["/user", "/tmp", "/user/admin"])
def test_user_tmp_and_homes_are_not_deleted_here(
    shared_cluster: LocalCluster, admin: WebUser, path: str
) -> None:
    reply = admin.post("/ui/delete", path=path, recursive="1", confirmed="1")
    assert_error_page(reply, 403, "does not delete it")
    with shared_cluster.client() as fs:
        assert fs.exists(path)
    root = admin.get("/ui/browse?path=/").text
    for name in ("user", "tmp"):
        row = re.search(rf'<tr data-name="{name}">.*?</tr>', root)
        assert row and "Delete" not in row.group(0), name
    home_row = re.search(r'<tr data-name="admin">.*?</tr>', admin.get("/ui/browse?path=/user").text)
    assert home_row and "Delete" not in home_row.group(0)


def test_a_page_cursor_holding_a_nul_is_refused(admin: WebUser) -> None:
    """No name holds a NUL, and PostgreSQL's text cannot: a cursor with one is a bad request on
    every store, never a server error."""
    for query in ("after=%00", "before=a%00b"):
        assert_error_page(admin.get(f"/ui/browse?path=/tmp&{query}"), 400, "NUL")
    assert admin.get("/ui/browse?path=/tmp&after=%FF").status == 200  # a name, though none such
