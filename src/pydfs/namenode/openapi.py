"""The OpenAPI 3.1 description of the name node API, generated from the endpoint table and the
wire Structs, so that clients can be generated and the API fuzzed against its own schema
(tests/integration/test_fuzz.py runs schemathesis against it).

Every refusal is a coded ``ErrorBody``: 4XX for the caller's mistakes, 5XX when the cluster
cannot serve now (no live data node, no space) or on a bug (``internal``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from pydfs import __version__, wire

if TYPE_CHECKING:
    from pydfs.namenode.api import Endpoint

ROUTE = "/api/openapi.json"
_REF = "#/components/schemas/{name}"
_FLAGS = ("read", "files")  # query flags: "1" turns them on, anything else leaves them off
_FLAG = '"1" to turn on; anything else (or leaving it out) leaves it off.'
_HEALTH = {
    "type": "object",
    "properties": {"status": {"type": "string"}},
    "required": ["status"],
}


def describe(endpoints: Sequence[Endpoint]) -> bytes:
    types = sorted(
        {t for ep in endpoints for t in (ep.body, ep.reply) if t is not None} | {wire.ErrorBody},
        key=lambda t: t.__name__,
    )
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    error = {"content": {"application/json": {"schema": {"$ref": _REF.format(name="ErrorBody")}}}}
    refused = {
        "4XX": {"description": "refused; the body says why", **error},
        "5XX": {
            "description": "the cluster cannot do it now (or a bug); the body says why",
            **error,
        },
    }
    spec_paths: dict[str, dict[str, Any]] = {
        f"{wire.API}/health": {
            "get": {
                "summary": "Liveness: answers while the server runs (needs no token).",
                "operationId": "get_health",
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"application/json": {"schema": _HEALTH}},
                    }
                },
            }
        }
    }
    for ep in endpoints:
        reply = (
            {"$ref": _REF.format(name=ep.reply.__name__)}
            if ep.reply is not None
            else {"type": "object"}
        )
        op: dict[str, Any] = {
            "summary": ep.summary,
            "operationId": f"{ep.method.lower()}{ep.route.replace('/', '_').replace('{id}', 'id')}",
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {ep.file: {"schema": {"type": "string", "format": "binary"}}}
                    if ep.file is not None
                    else {"application/json": {"schema": reply}},
                },
                **refused,
            },
        }
        if ep.access != "open":
            op["security"] = [{"node": []}] if ep.access == "node" else [{"bearer": []}]
        parameters = [
            {
                "name": name.rstrip("?"),
                "in": "query",
                "required": not name.endswith("?"),
                "schema": {"type": "string"},
                **({"description": _FLAG} if name.rstrip("?") in _FLAGS else {}),
            }
            for name in ep.params
        ]
        if "{id}" in ep.route:
            parameters.append(
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
            )
        if parameters:
            op["parameters"] = parameters
        if ep.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": _REF.format(name=ep.body.__name__)}}
                },
            }
        spec_paths.setdefault(f"{wire.API}{ep.route}", {})[ep.method.lower()] = op
    spec = {
        "openapi": "3.1.0",
        "info": {"title": "pydfs name node", "version": __version__},
        "paths": spec_paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A user's token: `Authorization: Bearer <token>`.",
                },
                "node": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "Data nodes only: `Authorization: Node <credential>`, the "
                    "credential derived from the cluster secret.",
                },
            },
        },
    }
    return msgspec.json.encode(spec)
