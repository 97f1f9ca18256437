"""Logging setup: one named logger per role, one line per event, lazy ``%`` arguments."""

from __future__ import annotations

import logging
import sys


def setup(role: str, level: str = "INFO") -> None:
    """Configure the root handler for a server process (clients log nothing unless asked)."""
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s",
    )
    # One access line per request is useful when debugging, noise otherwise.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
