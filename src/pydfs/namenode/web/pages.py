"""HTML for the web UI: the templates in ``templates/`` filled in with escaped values.

Templates are ``string.Template`` files shipped as package data. Every value that reaches a
template is HTML already: text goes through ``esc`` (``html.escape``) and URLs through ``url``,
so nothing a user named (a file, a node) can inject markup.

Every form that changes something carries the session's CSRF token in a hidden ``csrf`` field
(``csrf_field``), first, so that an upload's handler can check it before reading any file.
"""

from __future__ import annotations

import functools
import html
import stat
import time
from importlib import resources
from string import Template
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from pydfs import __version__, paths, wire

if TYPE_CHECKING:
    from pydfs.namenode.replication import Health
    from pydfs.namenode.status import DirPage

NAV = (("/", "Overview"), ("/ui/browse", "Browse"), ("/ui/datanodes", "Data nodes"))
PROTECTED = ("/user", "/tmp")
"""Directories the UI offers no delete button for, nor deletes (with the homes in /user):
removing one takes every user's files; the CLI can, for an admin who means it."""


def protected(path: str) -> bool:
    return path in PROTECTED or paths.parent(path) == "/user"


@functools.cache
def _template(name: str) -> Template:
    text = resources.files(__package__).joinpath("templates", name).read_text("utf-8")
    return Template(text)


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def url(route: str, **params: str) -> str:
    """An escaped URL for an attribute: *route* with its query parameters."""
    return esc(f"{route}?{urlencode(params, safe='/', quote_via=quote)}" if params else route)


def browse_url(path: str) -> str:
    return f"/ui/browse?{urlencode({'path': path}, safe='/', quote_via=quote)}"


def page(title: str, body: str, *, host: str, active: str = "", account: str = "") -> str:
    """A whole page. *account* is ``account(...)`` for a signed-in user; without it (the sign-in
    page) the header has no navigation."""
    nav = (
        "".join(
            f'<a href="{esc(href)}"{" class=active" if label == active else ""}>{label}</a>'
            for href, label in NAV
        )
        if account
        else ""
    )
    return _template("base.html").substitute(
        title=esc(title),
        nav=nav,
        host=esc(host),
        account=account,
        body=body,
        version=esc(__version__),
    )


def csrf_field(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(csrf)}">'


def account(name: str, admin: bool, csrf: str) -> str:
    """The header's signed-in user and sign-out button."""
    badge = ' <span class="badge neutral">admin</span>' if admin else ""
    return (
        f'<span class="user" title="signed in as {esc(name)}">{esc(name)}{badge}</span>'
        f'<form class="signout" method="post" action="/ui/logout">{csrf_field(csrf)}'
        '<button type="submit" class="small">Sign out</button></form>'
    )


def login(next_: str, message: str) -> str:
    box = f'<p class="message" role="alert">{esc(message)}</p>' if message else ""
    return _template("login.html").substitute(next=esc(next_), message=box)


# --- formatting ---------------------------------------------------------------------------


def size(n: int) -> str:
    """``1.5 MiB``, with the exact count of bytes in a tooltip."""
    value, unit = float(n), "B"
    for next_unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024:
            break
        value, unit = value / 1024, next_unit
    text = f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
    return f'<span title="{n:,} bytes">{text}</span>'


def when(ts: float) -> str:
    if not ts:
        return '<span class="muted">never</span>'
    local = time.localtime(ts)
    iso = time.strftime("%Y-%m-%dT%H:%M:%S%z", local)
    return f'<time datetime="{iso}">{time.strftime("%Y-%m-%d %H:%M:%S", local)}</time>'


def ago(ts: float, now: float) -> str:
    if not ts:
        return '<span class="muted">never</span>'
    seconds = max(0.0, now - ts)
    text = f"{seconds:.1f} s ago" if seconds < 60 else f"{seconds / 60:.0f} min ago"
    if seconds >= 3600:
        text = f"{seconds / 3600:.1f} h ago"
    return (
        f'<span title="{esc(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)))}">{text}</span>'
    )


def bar(part: int, whole: int) -> str:
    fraction = part / whole if whole else 0.0
    level = "bad" if fraction > 0.9 else "warn" if fraction > 0.75 else ""
    return (
        f'<div class="bar {level}" title="{fraction:.0%}">'
        f'<span style="width:{min(100.0, fraction * 100):.1f}%"></span></div>'
    )


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _badge(text: str, level: str) -> str:
    return f'<span class="badge {level}">{esc(text)}</span>'


# --- pages --------------------------------------------------------------------------------


def nodes_table(states: list[wire.DataNodeState], now: float) -> str:
    if not states:
        return '<p class="muted">No data node has registered yet.</p>'
    rows = []
    for s in states:
        state = _badge(s.state, "ok" if s.state == "live" else "bad")
        if s.write_failure:
            state += " " + _badge(f"its disk refused a block: {s.write_failure}", "warn")
        admin = _badge(s.admin_state, "neutral" if s.admin_state == "normal" else "warn")
        rows.append(
            f"<tr><td class=mono>{esc(s.id)}</td>"
            f'<td class=mono><a href="{esc(s.url)}/v1/health">{esc(s.url)}</a></td>'
            f"<td>{state}</td><td>{admin}</td>"
            f"<td class=num>{size(s.used)}</td><td class=num>{size(s.free)}</td>"
            f"<td style='width:12%'>{bar(s.capacity - s.free, s.capacity)}</td>"
            f"<td class=num>{s.blocks:,}</td><td>{ago(s.last_heartbeat, now)}</td></tr>"
        )
    return (
        '<table class="listing"><thead><tr><th>Id</th><th>Address</th><th>State</th>'
        '<th>Admin state</th><th class="num">Used</th><th class="num">Free</th><th>Disk</th>'
        '<th class="num">Blocks</th><th>Last heartbeat</th></tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table>"
    )


def overview(
    space: wire.Space,
    report: wire.FsckReport,
    health: Health,
    states: list[wire.DataNodeState],
    now: float,
    namenode: wire.NameNodeState,
) -> str:
    # As Membership.space does: each byte takes one replica on each of `copies` nodes.
    copies = max(1, min(space.replication, space.live_nodes or 1))
    status = report.status
    level = {"HEALTHY": "ok", "DEGRADED": "warn", "RESTORED": "warn"}.get(status, "bad")
    if not report.blocks:
        status, level = "NO BLOCKS", "neutral" if not report.files else level
    return _template("overview.html").substitute(
        raw_capacity=size(space.raw_capacity),
        usage_bar=bar(space.raw_capacity - space.raw_free, space.raw_capacity),
        raw_used=size(space.used),
        raw_free=size(space.raw_free),
        replication=space.replication,
        usable_free=size(space.usable),
        usable_capacity=size(space.raw_capacity // copies),
        live=space.live_nodes,
        dead=space.dead_nodes,
        dead_class="bad" if space.dead_nodes else "",
        decommissioning=sum(s.admin_state == "decommissioning" for s in states),
        health=esc(status.lower()),
        health_class=level,
        files=plural(report.files, "file"),
        blocks=plural(report.blocks, "block"),
        serving=plural(space.live_nodes, "serving node"),
        healthy=f"{report.healthy:,}",
        under_replicated=f"{report.under_replicated:,}",
        under_class="warn" if report.under_replicated else "",
        missing=f"{report.missing:,}",
        missing_class="bad" if report.missing else "",
        corrupt=f"{report.corrupt:,}",
        corrupt_class="bad" if report.corrupt else "",
        over_replicated=f"{health.over_replicated:,}",
        nodes=nodes_table(states, now),
        namenode=esc(namenode.url),
        lead="leads" if namenode.leads else "standby",
        lead_class="ok" if namenode.leads else "neutral",
        leader=esc(namenode.leader or "none"),
        epoch=namenode.epoch,
        metadata=esc(namenode.metadata),
        metadata_state="reachable" if namenode.metadata_up else "unreachable",
        metadata_class="" if namenode.metadata_up else "bad",
        takeovers=plural(namenode.takeovers, "time"),
        lost=plural(namenode.metadata_lost, "connection"),
    )


def datanodes(states: list[wire.DataNodeState], now: float) -> str:
    live = sum(s.state == "live" for s in states)
    summary = f"{live} live and {len(states) - live} dead of {len(states)} registered."
    return _template("datanodes.html").substitute(
        summary=esc(summary), nodes=nodes_table(states, now)
    )


def crumbs(path: str) -> str:
    parts = paths.split(path)
    links = [f'<a href="{esc(browse_url("/"))}">root</a>']
    for i, name in enumerate(parts):
        target = "/" + "/".join(parts[: i + 1])
        if i == len(parts) - 1:
            links.append(f'<span class="here">{esc(name)}</span>')
        else:
            links.append(f'<a href="{esc(browse_url(target))}">{esc(name)}</a>')
    if not parts:
        links[0] = '<span class="here">root</span>'
    return '<span class="sep">/</span>'.join(links)


def mode(entry: wire.FileStatus) -> str:
    """``drwxr-xr-t``, as ``ls -l`` shows permission bits."""
    kind = stat.S_IFDIR if entry.type == "dir" else stat.S_IFREG
    return f'<span class="mono" title="{entry.mode:04o}">{stat.filemode(kind | entry.mode)}</span>'


def delete_form(entry: wire.FileStatus, csrf: str, *, small: bool = True) -> str:
    if protected(entry.path):
        return ""
    is_dir = entry.type == "dir"
    question = (
        f"Delete the directory {entry.path} and everything in it?"
        if is_dir
        else f"Delete the file {entry.path}?"
    )
    return (
        f'<form method="post" action="/ui/delete" data-confirm="{esc(question)}">'
        f"{csrf_field(csrf)}"
        f'<input type="hidden" name="path" value="{esc(entry.path)}">'
        f'<input type="hidden" name="recursive" value="{"1" if is_dir else ""}">'
        '<input type="hidden" name="confirmed" value="">'
        f'<button type="submit" class="danger{" small" if small else ""}" '
        f'aria-label="delete {esc(entry.name)}">Delete</button></form>'
    )


def _cell(cls: str, label: str, value: str) -> str:
    """A listing's cell; *label* names it where a narrow screen stacks a row's cells."""
    named = f' data-label="{label}"' if label else ""
    return f'<td class="{cls}"{named}>{value}</td>'


def browse(page: DirPage, csrf: str) -> str:
    rows = []
    for e in page.entries:
        link = url("/ui/browse", path=e.path)
        if e.type == "dir":
            icon, kind, size_cell, rep = '<span class="icon dir">▸</span>', "directory", "", ""
            actions = delete_form(e, csrf)
        else:
            icon, kind = '<span class="icon">▫</span>', "file"
            size_cell, rep = size(e.size), str(e.replication)
            download = url("/ui/download", path=e.path)
            actions = (
                f'<a class="button small secondary" href="{download}" download>Download</a>'
                + delete_form(e, csrf)
            )
        cells = [
            ("name", "", f'{icon}<a href="{link}">{esc(e.name)}</a>'),
            ("wide", "", kind),
            ("", "", mode(e)),
            ("", "owner", esc(e.owner)),
            ("", "group", esc(e.group)),
            ("num", "", size_cell),
            ("", "", when(e.mtime)),
            ("num wide", "", rep),
            ("actions", "", actions),
        ]
        rows.append(
            f'<tr data-name="{esc(e.name)}">' + "".join(_cell(*cell) for cell in cells) + "</tr>"
        )
    if not rows and page.dirs + page.files:  # a page past either end (a crafted link)
        first = url("/ui/browse", path=page.path)
        rows.append(
            f'<tr><td colspan="9" class="muted">No entries on this page: '
            f'<a href="{first}">go to the first page</a>.</td></tr>'
        )
    elif not rows:
        rows.append('<tr><td colspan="9" class="muted">This directory is empty.</td></tr>')
    summary = (
        f"{page.dirs:,} {'directory' if page.dirs == 1 else 'directories'}, "
        f"{plural(page.files, 'file')}: {size(page.bytes)} in this directory."
    )
    return _template("browse.html").substitute(
        crumbs=crumbs(page.path),
        path=esc(page.path),
        csrf=csrf_field(csrf),
        upload_action=url("/ui/upload", dir=page.path),
        rows="\n".join(rows),
        summary=summary,
        pager=pager(page),
    )


def pager(page: DirPage) -> str:
    """Links to the pages around *page*, by the names at its ends (stable as entries come and
    go, unlike offsets)."""
    if not (page.earlier or page.later):
        return ""
    links = []
    if page.earlier:
        links.append(f'<a href="{url("/ui/browse", path=page.path)}">First page</a>')
        before = url("/ui/browse", path=page.path, before=page.entries[0].name)
        links.append(f'<a href="{before}" rel="prev">Previous page</a>')
    if page.later:
        after = url("/ui/browse", path=page.path, after=page.entries[-1].name)
        links.append(f'<a href="{after}" rel="next">Next page</a>')
    first, last = esc(page.entries[0].name), esc(page.entries[-1].name)
    where = f"{len(page.entries):,} of {page.dirs + page.files:,} entries: {first} … {last}"
    return (
        f'<nav class="pager" aria-label="pages"><span class="muted">{where}</span>'
        f"{''.join(links)}</nav>"
    )


def file_page(status: wire.FileStatus, csrf: str) -> str:
    rows = []
    for i, block in enumerate(status.blocks or []):
        badges = [_badge(n.id, "ok" if n.live else "bad") for n in block.nodes]
        replicas = " ".join(badges) or _badge("no replica", "bad")
        rows.append(
            f"<tr><td class=num>{i}</td><td class=mono>{esc(block.id)}</td>"
            f"<td class=num>{size(block.size)}</td><td>{replicas}</td></tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="4" class="muted">An empty file has no blocks.</td></tr>')
    return _template("file.html").substitute(
        crumbs=crumbs(status.path),
        download=url("/ui/download", path=status.path),
        delete=delete_form(status, csrf, small=False),
        size=size(status.size),
        mtime=when(status.mtime),
        ctime=when(status.ctime),
        owner=esc(status.owner),
        group=esc(status.group),
        mode=mode(status),
        replication=status.replication,
        block_size=size(status.block_size),
        blocks="\n".join(rows),
    )


def error(status: int, reason: str, message: str, back: str) -> str:
    label = "Back to the directory" if back.startswith("/ui/browse") else "Back to the overview"
    return _template("error.html").substitute(
        status=status, reason=esc(reason), message=esc(message), back=esc(back), back_label=label
    )


def confirm_delete(status: wire.FileStatus, recursive: bool, csrf: str) -> str:
    is_dir = status.type == "dir"
    question = (
        f"Delete the directory {status.path} and everything in it?"
        if is_dir and recursive
        else f"Delete the {'directory' if is_dir else 'file'} {status.path}?"
    )
    return _template("confirm.html").substitute(
        kind="directory" if is_dir else "file",
        csrf=csrf_field(csrf),
        question=esc(question),
        path=esc(status.path),
        recursive="1" if recursive else "",
        back=esc(browse_url(paths.parent(status.path))),
    )
