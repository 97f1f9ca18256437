"""The OpenAPI 3.1 description of the name node API, generated from the endpoint table and the
wire Structs, so that clients can be generated and the API fuzzed against its own schema."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from pydfs import __version__, wire

if TYPE_CHECKING:
    from pydfs.namenode.app import Endpoint

ROUTE = "/api/openapi.json"
_REF = "#/components/schemas/{name}"


def describe(endpoints: Sequence[Endpoint]) -> bytes:
    types = sorted(
        {t for ep in endpoints for t in (ep.body, ep.reply) if t is not None} | {wire.ErrorBody},
        key=lambda t: t.__name__,
    )
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    error = {"content": {"application/json": {"schema": {"$ref": _REF.format(name="ErrorBody")}}}}
    spec_paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        op: dict[str, Any] = {
            "summary": ep.summary,
            "operationId": f"{ep.method.lower()}{ep.route.replace('/', '_').replace('{id}', 'id')}",
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": _REF.format(name=ep.reply.__name__)}
                            if ep.reply is not None
                            else {"type": "object"}
                        }
                    },
                },
                "4XX": {"description": "refused; the body says why", **error},
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
                "bearer": {"type": "http", "scheme": "bearer"},
                "node": {"type": "apiKey", "in": "header", "name": "Authorization"},
            },
        },
    }
    return msgspec.json.encode(spec)
