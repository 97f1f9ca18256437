"""The web UI: server-rendered pages mounted into the name node's app.

Pages read the name node's own objects (namespace, membership, replicator) and keep no state of
their own. Forms change the namespace through the same domain methods as the JSON API, with every
path going through ``pydfs.paths.normalize``. Bad input is answered with a readable HTML error page
carrying the error's status (4xx), never a traceback.

Routes::

    GET  /                          overview: capacity, data nodes, block health
    GET  /ui/datanodes              every data node
    GET  /ui/browse?path=/dir       a directory listing (or a file's details and blocks)
    GET  /ui/download?path=/file    the file's bytes, as an attachment
    POST /ui/upload?dir=/dir        multipart form: ``overwrite`` (optional, first), then ``file``s
    POST /ui/mkdir                  form: ``dir``, ``name``
    POST /ui/delete                 form: ``path``, ``recursive``, ``confirmed``
    GET  /ui/static/{name}          CSS and JavaScript (no build step)

**UI transfers pass through the name node.** A browser cannot speak the block protocol, so the
bytes of an upload or a download made in the UI stream through the name node process, which acts
as an ordinary client (one ``AsyncClient`` pointed at its own address, created on first use and
closed with the app) towards the data nodes. This differs from the CLI and the SDK, whose bytes
go straight between the client and the data nodes and never touch the name node: the UI is a
convenience, not the path for bulk data. Both directions run in constant memory: an upload is
spooled to a temporary file (in memory up to ``SPOOL_MEMORY``, on disk beyond) and then written
block by block, because ``AsyncClient.write_stream`` reads its stream synchronously; a download
is relayed chunk by chunk as the data nodes send it.

A delete asks for confirmation: the page's script sets ``confirmed`` after a ``confirm()``
dialog, and without the script the server answers with a confirmation page instead.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import quote

from aiohttp import BodyPartReader, web

from pydfs import paths
from pydfs.client.aio import AsyncClient
from pydfs.errors import AlreadyExists, InvalidArgument, IsADirectory, NotFound, PydfsError
from pydfs.web import pages

if TYPE_CHECKING:
    from pydfs.namenode import NameNode

log = logging.getLogger("pydfs.web")

UI_USER = "web"  # owner of what the UI creates (the UI has no logins)
SPOOL_MEMORY = 1024 * 1024  # an upload beyond this spills to a temporary file on disk
CHUNK = 256 * 1024
STATIC = {"ui.css": "text/css", "ui.js": "text/javascript"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REASONS = {
    400: "Bad request",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
}


def setup(app: web.Application, nn: NameNode) -> None:
    ns, members = nn.namespace, nn.membership
    transfers = _Transfers()
    app.on_cleanup.append(transfers.close)

    def render(request: web.Request, title: str, body: str, *, active: str = "") -> web.Response:
        text = pages.page(title, body, host=request.host, active=active)
        return web.Response(text=text, content_type="text/html")

    def html_errors(handler: Handler) -> Handler:
        """Answer a failure with an HTML page (the app's own middleware would send JSON)."""

        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except PydfsError as exc:
                status, message = exc.status, exc.message
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise  # redirects
                status, message = exc.status, exc.reason  # e.g. a form body over the size limit
            except (ConnectionResetError, asyncio.CancelledError):
                raise
            except Exception:
                log.exception("%s %s failed", request.method, request.path)
                status, message = 500, "internal error; see the name node's log"
            reason = _REASONS.get(status, "Error" if status < 500 else "Server error")
            back = request.get("back", "/")
            resp = render(request, reason, pages.error(status, reason, message, back))
            resp.set_status(status)
            return resp

        return wrapper

    @html_errors
    async def overview(request: web.Request) -> web.StreamResponse:
        body = pages.overview(
            members.space(ns.replication),
            nn.fsck(paths.ROOT, files=False),
            nn.replicator.health,
            members.states(),
            time.time(),
        )
        return render(request, "Overview", body, active="Overview")

    @html_errors
    async def datanodes(request: web.Request) -> web.StreamResponse:
        body = pages.datanodes(members.states(), time.time())
        return render(request, "Data nodes", body, active="Data nodes")

    @html_errors
    async def browse(request: web.Request) -> web.StreamResponse:
        path = paths.normalize(request.query.get("path", paths.ROOT))
        request["back"] = pages.browse_url(paths.parent(path)) if path != paths.ROOT else "/"
        status = ns.stat(path)
        body = pages.browse(ns.listdir(path)) if status.type == "dir" else pages.file_page(status)
        return render(request, path, body, active="Browse")

    @html_errors
    async def download(request: web.Request) -> web.StreamResponse:
        path = paths.normalize(_query(request, "path"))
        request["back"] = pages.browse_url(paths.parent(path))
        status = ns.stat(path)
        if status.type == "dir":
            raise IsADirectory(f"{path} is a directory: only files can be downloaded")
        chunks = transfers.client(request).read_stream(path, 0, status.size)
        try:
            first = await anext(chunks, b"")  # fails here, before the status line, if unreadable
            resp = web.StreamResponse(
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Disposition": _attachment(status.name),
                    "Cache-Control": "no-store",
                }
            )
            resp.content_length = status.size
            await resp.prepare(request)
            try:
                await resp.write(first)
                async for chunk in chunks:
                    await resp.write(chunk)
            except PydfsError as exc:
                # The status line is out: cut the connection, so that the browser reports a
                # failed download rather than keeping a short file.
                log.warning("download of %s failed part way: %s", path, exc)
                if request.transport is not None:
                    request.transport.close()
                return resp
            await resp.write_eof()
            return resp
        finally:
            aclose = getattr(chunks, "aclose", None)  # an async generator: close it now
            if aclose is not None:
                await aclose()

    @html_errors
    async def upload(request: web.Request) -> web.StreamResponse:
        directory = paths.normalize(_query(request, "dir"))
        request["back"] = pages.browse_url(directory)
        ns.resolve_dir(directory)  # before reading the body
        if request.content_type != "multipart/form-data":
            raise InvalidArgument("an upload must be sent as a multipart/form-data form")
        try:
            reader = await request.multipart()
        except (ValueError, AssertionError, KeyError):
            raise InvalidArgument("malformed upload form") from None
        overwrite, uploaded = False, 0
        client = transfers.client(request)
        try:
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    raise InvalidArgument("nested multipart forms are not accepted")
                if part.name == "overwrite":
                    overwrite = (await part.read_chunk(CHUNK)).strip() in (b"1", b"on")
                    await part.release()
                elif part.name == "file" and part.filename:
                    name = paths.validate_name(part.filename.replace("\\", "/").rsplit("/", 1)[-1])
                    target = paths.join(directory, name)
                    if not overwrite and ns.lookup(target) is not None:
                        raise AlreadyExists(
                            f"{target} exists; tick 'replace existing' to overwrite it"
                        )
                    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as spool:
                        while chunk := await part.read_chunk(CHUNK):
                            spool.write(chunk)
                        spool.seek(0)
                        await client.write_stream(target, spool, overwrite=overwrite)
                    uploaded += 1
                    log.info("web upload of %s through the name node", target)
                else:
                    await part.release()  # an empty file field, or one we do not know
        except PydfsError:
            raise
        except (ValueError, AssertionError):  # aiohttp's multipart parser rejects the body
            raise InvalidArgument("malformed upload form") from None
        if not uploaded:
            raise InvalidArgument("choose a file to upload")
        raise web.HTTPSeeOther(pages.browse_url(directory))

    @html_errors
    async def mkdir(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        directory = paths.normalize(_field(form, "dir"))
        request["back"] = pages.browse_url(directory)
        name = _field(form, "name").strip()
        if not name:
            raise InvalidArgument("enter a name for the new directory")
        ns.resolve_dir(directory)
        target = paths.normalize(name, directory)
        if ns.lookup(target) is not None:
            raise AlreadyExists(f"{target} already exists")
        ns.mkdir(target, None, parents=True)  # "a/b" makes both
        raise web.HTTPSeeOther(pages.browse_url(directory))

    @html_errors
    async def delete(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        path = paths.normalize(_field(form, "path"))
        request["back"] = pages.browse_url(paths.parent(path))
        recursive = form.get("recursive") == "1"
        status = ns.stat(path)
        if form.get("confirmed") != "1":
            body = pages.confirm_delete(status, recursive)
            return render(request, f"Delete {path}?", body, active="Browse")
        files = ns.delete(path, recursive=recursive)
        log.info("web delete of %s (%d files)", path, files)
        raise web.HTTPSeeOther(pages.browse_url(paths.parent(path)))

    @html_errors
    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC:
            raise NotFound(f"no static file {name!r}")
        return web.Response(
            body=_static(name),
            content_type=STATIC[name],
            headers={"Cache-Control": "max-age=300"},
        )

    async def to_overview(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/")

    r = app.router
    r.add_get("/", overview)
    r.add_get("/ui", to_overview)
    r.add_get("/ui/", to_overview)
    r.add_get("/ui/datanodes", datanodes)
    r.add_get("/ui/browse", browse)
    r.add_get("/ui/download", download)
    r.add_post("/ui/upload", upload)
    r.add_post("/ui/mkdir", mkdir)
    r.add_post("/ui/delete", delete)
    r.add_get("/ui/static/{name}", static)


class _Transfers:
    """The UI's one client of its own name node: made on first use, on the running loop."""

    def __init__(self) -> None:
        self._client: AsyncClient | None = None

    def client(self, request: web.Request) -> AsyncClient:
        if self._client is None:
            self._client = AsyncClient(_own_url(request))
        return self._client

    async def close(self, app: web.Application) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _own_url(request: web.Request) -> str:
    """This name node's URL, as the socket the request arrived on shows it.

    The app learns its address only once bound, so it is derived per request. The socket's own
    address is used rather than the ``Host`` header, which the browser (or anyone) chooses.
    """
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        host, port = sockname[0], sockname[1]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    return str(request.url.origin())


def _query(request: web.Request, name: str) -> str:
    value = request.query.get(name)
    if value is None:
        raise InvalidArgument(f"missing query parameter {name!r}")
    return value


def _field(form: Mapping[str, object], name: str) -> str:
    value = form.get(name)
    if not isinstance(value, str):
        raise InvalidArgument(f"missing form field {name!r}")
    return value


def _attachment(name: str) -> str:
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@functools.cache
def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()
