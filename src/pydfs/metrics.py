"""Prometheus metrics (being written): ``/metrics`` on every server."""

from __future__ import annotations

from typing import Any

from aiohttp import web


def instrument(app: web.Application, role: str, node: Any) -> None:
    """Add request metrics and a ``/metrics`` route to a server's app."""
