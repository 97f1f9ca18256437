"""The web UI: server-rendered pages mounted into the name node's app.

Pages read the name node's own objects (namespace, membership, replicator) and keep no state of
their own. Forms change the namespace through the same domain methods as the JSON API, with every
path going through ``pydfs.paths.normalize``. Bad input is answered with a readable HTML error page
carrying the error's status (4xx), never a traceback.

Routes (all but the sign-in form and the static files need a signed-in user)::

    GET  /ui/login?next=/path       the sign-in form, which asks for the user's token
    POST /ui/login                  form: ``token``, ``next``: sets the session cookie, then
                                    goes to ``next`` (a path on this site only)
    POST /ui/logout                 form: ``csrf``: clears the session cookie
    GET  /                          overview: capacity, data nodes, block health
    GET  /ui/datanodes              every data node
    GET  /ui/browse?path=/dir       a directory listing, ``PAGE`` entries at a time (``&after=NAME``
                                    or ``&before=NAME`` for the next or previous page), or a
                                    file's details and blocks; without ``path``, the user's home
    GET  /ui/download?path=/file    the file's bytes, as an attachment
    POST /ui/upload?dir=/dir        multipart form: ``csrf`` (first), ``overwrite`` (optional),
                                    then ``file``s
    POST /ui/mkdir                  form: ``csrf``, ``dir``, ``name``
    POST /ui/delete                 form: ``csrf``, ``path``, ``recursive``, ``confirmed``
    GET  /ui/static/{name}          CSS and JavaScript (no build step; public)

**Trust model: the UI acts as the signed-in user, with exactly that user's rights.** A user signs
in with their own bearer token (the one ``pydfs login`` takes); the UI checks it with
``Users.authenticate`` and keeps it, sealed, in an HttpOnly, ``SameSite=Strict`` session cookie
(``Secure`` over TLS). Every request opens the cookie and authenticates the token again, so a
removed user or a reset token is refused on the very next request; ``web.sessions`` explains
the design. Each namespace call passes the signed-in ``User``, so POSIX permissions apply as in the
API (a refusal is a 403 page), and the overview's block counts are the only system-wide figures
shown (no per-file health). A request without a valid session is sent to the sign-in page (303).

Every POST that changes something carries the session's CSRF token in a ``csrf`` field (compared
in constant time; 403 if missing or wrong), and any POST whose ``Origin`` header names another
origin is refused (403), the sign-in form's included. HTML pages are sent ``no-store`` and may not
be framed by other sites.

**UI transfers pass through the name node.** A browser cannot speak the block protocol, so the
bytes of an upload or a download made in the UI stream through the name node process, which acts
as an ordinary client towards the data nodes: one ``AsyncClient`` per transfer, holding the
signed-in user's token (so the API's permission checks apply to it too), pointed at this name
node's own address (``https`` and verified with ``tls_ca`` when the name node serves TLS), and
closed when the transfer ends. This differs from the CLI and the SDK, whose bytes go straight
between the client and the data nodes and never touch the name node: the UI is a convenience,
not the path for bulk data. Both directions run in constant memory: an upload is spooled to a
temporary file (in memory up to ``SPOOL_MEMORY``, on disk beyond) and then written block by
block, because ``AsyncClient.write_stream`` reads its stream synchronously; a download is relayed
chunk by chunk as the data nodes send it.

A delete asks for confirmation: the page's script sets ``confirmed`` after a ``confirm()``
dialog, and without the script the server answers with a confirmation page instead. ``/user``,
``/tmp`` and the homes in ``/user`` have no delete button and are not deleted here at all
(``pages.PROTECTED``). An upload is confirmed by the script too (naming the files, the directory
and whether files of the same name are replaced); making a directory is not (it is harmless,
and the form shows the path it will make).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import string
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from aiohttp import BodyPartReader, web

from pydfs import paths
from pydfs.client.aio import AsyncClient
from pydfs.errors import (
    AlreadyExists,
    InvalidArgument,
    IsADirectory,
    NotFound,
    PermissionDenied,
    PydfsError,
    Unauthenticated,
)
from pydfs.namenode.auth import home_of
from pydfs.namenode.web import pages
from pydfs.namenode.web.sessions import COOKIE, Session, Sessions

if TYPE_CHECKING:
    from pydfs.namenode import NameNode

log = logging.getLogger("pydfs.web")

LOGIN = "/ui/login"
PAGE = 200  # directory entries on a page: a directory of 100,000 must not make a huge page
SPOOL_MEMORY = 1024 * 1024  # an upload beyond this spills to a temporary file on disk
CHUNK = 256 * 1024
FIELD_LIMIT = 1024  # bytes read of a small multipart field (csrf, overwrite)
STATIC = {"ui.css": "text/css", "ui.js": "text/javascript"}
PAGE_HEADERS = {
    "Cache-Control": "no-store",  # pages show what one user may see: keep them out of caches
    "X-Frame-Options": "DENY",  # no clickjacking of the delete buttons
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "same-origin",  # paths stay here when a data node link is followed
    "X-Content-Type-Options": "nosniff",
}
BAD_CSRF = (
    "this form did not come from a page of this session (or the page is older than your last "
    "sign-in): reload the page and try again"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REASONS = {
    400: "Bad request",
    401: "Not signed in",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
}


def setup(app: web.Application, nn: NameNode) -> None:
    ns, members = nn.namespace, nn.membership
    sessions = Sessions(nn.secret, nn.users)

    def render(
        request: web.Request, title: str, body: str, *, active: str = "", status: int = 200
    ) -> web.Response:
        session = request.get("session")
        account = ""
        if isinstance(session, Session):
            account = pages.account(session.user.name, session.user.admin, session.csrf)
        text = pages.page(title, body, host=request.host, active=active, account=account)
        return web.Response(
            text=text, content_type="text/html", status=status, headers=PAGE_HEADERS
        )

    def ui(*, public: bool = False) -> Callable[[Handler], Handler]:
        """Make a handler a UI page: it needs a signed-in user (unless *public*), a POST must not
        come from another origin, and a failure is answered with an HTML page (the app's own
        middleware would send JSON)."""

        def decorate(handler: Handler) -> Handler:
            @functools.wraps(handler)
            async def wrapper(request: web.Request) -> web.StreamResponse:
                try:
                    if request.method == "POST":
                        _check_origin(request)
                    if not public:
                        value = request.cookies.get(COOKIE)
                        session = await sessions.open(value) if value else None
                        if session is None:
                            return _to_login(request, clear=value is not None)
                        request["session"] = session
                    return await handler(request)
                except PydfsError as exc:
                    status, message = exc.status, exc.message
                except web.HTTPException as exc:
                    if exc.status < 400:
                        raise  # redirects
                    status, message = exc.status, exc.reason  # e.g. a form body over the limit
                except (ConnectionResetError, asyncio.CancelledError):
                    raise
                except Exception:
                    log.exception("%s %s failed", request.method, request.path)
                    status, message = 500, "internal error; see the name node's log"
                reason = _REASONS.get(status, "Error" if status < 500 else "Server error")
                back = request.get("back", "/")
                body = pages.error(status, reason, message, back)
                return render(request, reason, body, status=status)

            return wrapper

        return decorate

    def signed_in(request: web.Request) -> Session:
        session = request.get("session")
        if not isinstance(session, Session):  # a public handler asked: never act as anyone
            raise Unauthenticated("sign in first")
        return session

    def check_csrf(request: web.Request, given: object) -> None:
        if not Sessions.csrf_ok(signed_in(request), given):
            raise PermissionDenied(BAD_CSRF)

    async def form_of(request: web.Request) -> Mapping[str, object]:
        """The request's url-encoded form, once its CSRF token has been checked."""
        form = await request.post()
        check_csrf(request, form.get("csrf"))
        return form

    def transfer_client(request: web.Request) -> AsyncClient:
        """A client of this name node acting as the signed-in user: close it after use."""
        return AsyncClient(_own_url(request), token=signed_in(request).token, ca=nn.config.tls_ca)

    # --- signing in and out ---------------------------------------------------------------

    def login_page(
        request: web.Request, next_: str, message: str = "", status: int = 200
    ) -> web.Response:
        return render(request, "Sign in", pages.login(next_, message), status=status)

    @ui(public=True)
    async def login_form(request: web.Request) -> web.StreamResponse:
        return login_page(request, _safe_next(request.query.get("next")))

    @ui(public=True)
    async def login(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        next_field, token = form.get("next"), form.get("token")
        next_ = _safe_next(next_field if isinstance(next_field, str) else None)
        token = token.strip() if isinstance(token, str) else ""
        try:
            if not token:
                raise Unauthenticated("no token given")
            user = await nn.users.authenticate(token)
        except Unauthenticated:
            log.info("web sign-in refused (from %s)", request.remote)
            message = (
                "That token is not valid: check it, or ask an admin for a new one "
                "(a token stops working when it is reset or its user removed)."
                if token
                else "Enter your token to sign in."
            )
            return login_page(request, next_, message, status=401)
        resp = _see_other(next_)
        resp.set_cookie(
            COOKIE,
            sessions.seal(token),
            path="/",
            secure=request.secure,
            httponly=True,
            samesite="Strict",
        )
        log.info("web sign-in of %s", user.name)
        return resp

    @ui()
    async def logout(request: web.Request) -> web.StreamResponse:
        await form_of(request)
        resp = _see_other(LOGIN)
        _clear_cookie(request, resp)
        log.info("web sign-out of %s", signed_in(request).user.name)
        return resp

    # --- pages ----------------------------------------------------------------------------

    @ui()
    async def overview(request: web.Request) -> web.StreamResponse:
        body = pages.overview(
            members.space(ns.replication),
            await nn.fsck(paths.ROOT, files=False),  # counts only: no path is shown
            nn.replicator.health,
            members.states(),
            time.time(),
            nn.state(),
        )
        return render(request, "Overview", body, active="Overview")

    @ui()
    async def datanodes(request: web.Request) -> web.StreamResponse:
        body = pages.datanodes(members.states(), time.time())
        return render(request, "Data nodes", body, active="Data nodes")

    @ui()
    async def browse(request: web.Request) -> web.StreamResponse:
        session = signed_in(request)
        if "path" not in request.query:  # the file browser opens at the user's home
            home = home_of(session.user.name)
            try:
                found = await ns.lookup(home, session.user) is not None
            except PydfsError:
                found = False
            raise web.HTTPSeeOther(pages.browse_url(home if found else paths.ROOT))
        path = paths.normalize(request.query["path"])
        request["back"] = pages.browse_url(paths.parent(path)) if path != paths.ROOT else "/"
        status = await ns.stat(path, session.user)
        if status.type == "dir":
            after, before = request.query.get("after"), request.query.get("before")
            page = await ns.listdir_page(path, session.user, limit=PAGE, after=after, before=before)
            body = pages.browse(page, session.csrf)
        else:
            body = pages.file_page(status, session.csrf)
        return render(request, path, body, active="Browse")

    @ui()
    async def download(request: web.Request) -> web.StreamResponse:
        path = paths.normalize(_query(request, "path"))
        request["back"] = pages.browse_url(paths.parent(path))
        status = await ns.stat(path, signed_in(request).user)
        if status.type == "dir":
            raise IsADirectory(f"{path} is a directory: only files can be downloaded")
        # The client asks the API for read tokens as the user: that is where r is checked.
        client = transfer_client(request)
        chunks = client.read_stream(path, 0, status.size)
        try:
            first = await anext(chunks, b"")  # fails here, before the status line, if unreadable
            resp = web.StreamResponse(
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Disposition": _attachment(status.name),
                    "Cache-Control": "no-store",
                    "X-Content-Type-Options": "nosniff",
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
            try:
                aclose = getattr(chunks, "aclose", None)  # an async generator: close it now
                if aclose is not None:
                    await aclose()
            finally:
                await client.close()

    @ui()
    async def upload(request: web.Request) -> web.StreamResponse:
        user = signed_in(request).user
        directory = paths.normalize(_query(request, "dir"))
        request["back"] = pages.browse_url(directory)
        await ns.resolve_dir(directory, user)  # before reading the body
        if request.content_type != "multipart/form-data":
            raise InvalidArgument("an upload must be sent as a multipart/form-data form")
        try:
            reader = await request.multipart()
        except (ValueError, AssertionError, KeyError):
            raise InvalidArgument("malformed upload form") from None
        checked, overwrite, uploaded = False, False, 0
        try:
            async with transfer_client(request) as client:
                async for part in reader:
                    if not isinstance(part, BodyPartReader):
                        raise InvalidArgument("nested multipart forms are not accepted")
                    if not checked:  # the csrf field comes first: nothing is read before it
                        if part.name != "csrf":
                            raise PermissionDenied(BAD_CSRF)
                        check_csrf(request, (await _small_field(part)).decode(errors="replace"))
                        checked = True
                    elif part.name == "overwrite":
                        overwrite = (await _small_field(part)).strip() in (b"1", b"on")
                    elif part.name == "file" and part.filename:
                        name = part.filename.replace("\\", "/").rsplit("/", 1)[-1]
                        target = paths.join(directory, paths.validate_name(name))
                        if not overwrite and await ns.lookup(target, user) is not None:
                            raise AlreadyExists(
                                f"{target} exists; tick 'replace existing' to overwrite it"
                            )
                        await nn.commits.check_writable(target, user, overwrite=overwrite)
                        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as spool:
                            while chunk := await part.read_chunk(CHUNK):
                                spool.write(chunk)
                            spool.seek(0)
                            await client.write_stream(target, spool, overwrite=overwrite)
                        uploaded += 1
                        log.info("web upload of %s by %s through the name node", target, user.name)
                    else:
                        await part.release()  # an empty file field, or one we do not know
        except PydfsError:
            raise
        except (ValueError, AssertionError):  # aiohttp's multipart parser rejects the body
            raise InvalidArgument("malformed upload form") from None
        if not checked:
            raise PermissionDenied(BAD_CSRF)
        if not uploaded:
            raise InvalidArgument("choose a file to upload")
        raise web.HTTPSeeOther(pages.browse_url(directory))

    @ui()
    async def mkdir(request: web.Request) -> web.StreamResponse:
        user = signed_in(request).user
        form = await form_of(request)
        directory = paths.normalize(_field(form, "dir"))
        request["back"] = pages.browse_url(directory)
        name = _field(form, "name").strip()
        if not name:
            raise InvalidArgument("enter a name for the new directory")
        if name.startswith("/") or any(part in (".", "..", "...") for part in name.split("/")):
            raise InvalidArgument("a new directory's name stays in this directory: no '..' or '/'")
        await ns.resolve_dir(directory, user)
        target = paths.normalize(name, directory)
        if await ns.lookup(target, user) is not None:
            raise AlreadyExists(f"{target} already exists")
        await ns.mkdir(target, user, parents=True)  # "a/b" makes both
        raise web.HTTPSeeOther(pages.browse_url(directory))

    @ui()
    async def delete(request: web.Request) -> web.StreamResponse:
        session = signed_in(request)
        form = await form_of(request)
        path = paths.normalize(_field(form, "path"))
        request["back"] = pages.browse_url(paths.parent(path))
        recursive = form.get("recursive") == "1"
        if pages.protected(path):
            raise PermissionDenied(
                f"{path} holds every user's files (or one user's home): the web UI does not "
                "delete it; an admin who means to can, with the CLI"
            )
        status = await ns.stat(path, session.user)
        if form.get("confirmed") != "1":
            body = pages.confirm_delete(status, recursive, session.csrf)
            return render(request, f"Delete {path}?", body, active="Browse")
        files = await ns.delete(path, session.user, recursive=recursive)
        log.info("web delete of %s by %s (%d files)", path, session.user.name, files)
        raise web.HTTPSeeOther(pages.browse_url(paths.parent(path)))

    @ui(public=True)
    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC:
            raise NotFound(f"no static file {name!r}")
        return web.Response(
            body=_static(name),
            content_type=STATIC[name],
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    async def to_overview(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/")

    r = app.router
    r.add_get(LOGIN, login_form)
    r.add_post(LOGIN, login)
    r.add_post("/ui/logout", logout)
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


def _check_origin(request: web.Request) -> None:
    """Refuse a POST that a page of another origin sent (browsers name the origin of a form)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin.lower() != f"{request.scheme}://{request.host}".lower():
        raise PermissionDenied("a form sent from another site was refused")


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this site, never another site's URL."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(c < " " or c == "\x7f" for c in value)
        or value.startswith(LOGIN)
    ):
        return "/"
    return value


def _see_other(location: str) -> web.Response:
    location = quote(location, safe=string.punctuation)  # only spaces and non-ASCII change
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _to_login(request: web.Request, *, clear: bool) -> web.Response:
    """Send a request without a valid session to the sign-in page, and back after it."""
    location = LOGIN
    if request.method in ("GET", "HEAD"):
        location += "?" + urlencode({"next": request.path_qs})
    resp = _see_other(location)
    if clear:  # expired, forged, or its user's token revoked
        _clear_cookie(request, resp)
    return resp


def _clear_cookie(request: web.Request, resp: web.StreamResponse) -> None:
    resp.del_cookie(COOKIE, path="/", secure=request.secure, httponly=True, samesite="Strict")


async def _small_field(part: BodyPartReader) -> bytes:
    value = await part.read_chunk(FIELD_LIMIT)
    await part.release()
    return value


def _own_url(request: web.Request) -> str:
    """This name node's URL, as the socket the request arrived on shows it.

    The app learns its address only once bound, so it is derived per request. The socket's own
    address is used rather than the ``Host`` header, which the browser (or anyone) chooses.
    """
    scheme = "https" if request.secure else "http"
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        host, port = sockname[0], sockname[1]
        return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
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
