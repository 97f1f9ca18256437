"""The name node's HTTP routes: parse, call one domain method, encode. No logic beyond that."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from pydfs import paths, wire
from pydfs.server import json_response, make_app, query, read_body

if TYPE_CHECKING:
    from pydfs.namenode import NameNode


def _user(request: web.Request) -> str:
    user = request.headers.get(wire.H_USER, "anonymous")
    return paths.validate_name(user)


def build(nn: NameNode) -> web.Application:
    app = make_app()
    ns, uploads, members = nn.namespace, nn.uploads, nn.membership
    r = app.router
    v1 = wire.API

    async def stat(request: web.Request) -> web.Response:
        return json_response(ns.stat(paths.normalize(query(request, "path"))))

    async def listdir(request: web.Request) -> web.Response:
        return json_response(ns.listdir(paths.normalize(query(request, "path"))))

    async def mkdir(request: web.Request) -> web.Response:
        req = await read_body(request, wire.MkdirRequest)
        return json_response(
            ns.mkdir(paths.normalize(req.path), _user(request), parents=req.parents)
        )

    async def create(request: web.Request) -> web.Response:
        req = await read_body(request, wire.PathRequest)
        return json_response(ns.create_file(paths.normalize(req.path), _user(request)))

    async def delete(request: web.Request) -> web.Response:
        req = await read_body(request, wire.DeleteRequest)
        files = ns.delete(paths.normalize(req.path), recursive=req.recursive, type=req.type)
        return json_response({"deleted_files": files})

    async def copy(request: web.Request) -> web.Response:
        req = await read_body(request, wire.CopyRequest)
        dst = None if req.dst is None else paths.normalize(req.dst)
        return json_response(
            ns.copy(paths.normalize(req.src), dst, _user(request), overwrite=req.overwrite)
        )

    async def move(request: web.Request) -> web.Response:
        req = await read_body(request, wire.MoveRequest)
        return json_response(
            ns.move(paths.normalize(req.src), paths.normalize(req.dst), overwrite=req.overwrite)
        )

    async def format_(request: web.Request) -> web.Response:
        files, blocks = ns.format()
        members.request_reports()  # so that blocks the namespace never knew go too
        return json_response(wire.FormatReply(files, blocks, members.space(ns.replication)))

    async def space(request: web.Request) -> web.Response:
        return json_response(members.space(ns.replication))

    async def datanodes(request: web.Request) -> web.Response:
        return json_response(wire.DataNodeList(members.states()))

    async def start_upload(request: web.Request) -> web.Response:
        req = await read_body(request, wire.UploadRequest)
        return json_response(uploads.start(req, _user(request)))

    async def allocate(request: web.Request) -> web.Response:
        req = await read_body(request, wire.BlockAllocRequest)
        return json_response(uploads.allocate(request.match_info["id"], req))

    async def commit(request: web.Request) -> web.Response:
        req = await read_body(request, wire.CommitRequest)
        return json_response(uploads.commit(request.match_info["id"], req))

    async def renew(request: web.Request) -> web.Response:
        uploads.renew(request.match_info["id"])
        return json_response({})

    async def abort(request: web.Request) -> web.Response:
        uploads.abort(request.match_info["id"])
        return json_response({})

    async def heartbeat(request: web.Request) -> web.Response:
        return json_response(nn.heartbeat(await read_body(request, wire.Heartbeat)))

    async def report(request: web.Request) -> web.Response:
        return json_response(nn.block_report(await read_body(request, wire.BlockReport)))

    async def corrupt(request: web.Request) -> web.Response:
        nn.suspect(await read_body(request, wire.CorruptReplica))
        return json_response({})

    async def setrep(request: web.Request) -> web.Response:
        req = await read_body(request, wire.SetReplicationRequest)
        return json_response({"files": nn.setrep(paths.normalize(req.path), req.replication)})

    async def fsck(request: web.Request) -> web.Response:
        path = paths.normalize(request.query.get("path", "/"))
        return json_response(nn.fsck(path, files=request.query.get("files") == "1"))

    async def decommission(request: web.Request) -> web.Response:
        req = await read_body(request, wire.NodeRequest)
        return json_response(nn.decommission(req.node))

    async def recommission(request: web.Request) -> web.Response:
        req = await read_body(request, wire.NodeRequest)
        return json_response(nn.decommission(req.node, undo=True))

    r.add_get(f"{v1}/fs/stat", stat)
    r.add_get(f"{v1}/fs/list", listdir)
    r.add_post(f"{v1}/fs/mkdir", mkdir)
    r.add_post(f"{v1}/fs/create", create)
    r.add_post(f"{v1}/fs/delete", delete)
    r.add_post(f"{v1}/fs/copy", copy)
    r.add_post(f"{v1}/fs/move", move)
    r.add_post(f"{v1}/fs/format", format_)
    r.add_get(f"{v1}/cluster/space", space)
    r.add_get(f"{v1}/cluster/datanodes", datanodes)
    r.add_post(f"{v1}/uploads", start_upload)
    r.add_post(f"{v1}/uploads/{{id}}/blocks", allocate)
    r.add_post(f"{v1}/uploads/{{id}}/commit", commit)
    r.add_post(f"{v1}/uploads/{{id}}/renew", renew)
    r.add_delete(f"{v1}/uploads/{{id}}", abort)
    r.add_post(f"{v1}/datanodes/heartbeat", heartbeat)
    r.add_post(f"{v1}/datanodes/report", report)
    r.add_post(f"{v1}/blocks/corrupt", corrupt)
    r.add_post(f"{v1}/fs/setrep", setrep)
    r.add_get(f"{v1}/fsck", fsck)
    r.add_post(f"{v1}/cluster/decommission", decommission)
    r.add_post(f"{v1}/cluster/recommission", recommission)
    from pydfs import metrics
    from pydfs.web import routes as web_routes

    web_routes.setup(app, nn)
    metrics.instrument(app, "namenode", nn)
    return app
