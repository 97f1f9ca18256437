"""Ids that grow with time, for what a name node keeps in indexes: blocks, uploads, and the
requests it has applied.

32 lowercase hex digits: the time in µs (13 digits; they wrap in 2112), then random ones (76
bits: two ids never meet in practice, across processes, name nodes and restarts, and a clock
set back only repeats the time part). A new id goes in at the end of its index, where the pages
are in the cache, instead of on a random page of an index that outgrows the cache as the cluster
grows (``bench/id_order.py``). Nothing grants anything for knowing an id (tokens and owners do);
what an id tells is when it was made.
"""

from __future__ import annotations

import secrets
import time

_TIME = 1 << 52
_RANDOM = 68  # bits after the time, when two random digits come first


def new_id(*, spread: bool = False) -> str:
    """A new id; *spread*: behind two random digits, so that ids spread over 256 ends of an
    index (and data nodes spread block files over directories by those digits)."""
    now = time.time_ns() // 1000 % _TIME
    bits = secrets.randbits(76)
    if spread:
        return f"{bits >> _RANDOM:02x}{now:013x}{bits & ((1 << _RANDOM) - 1):017x}"
    return f"{now:013x}{bits:019x}"
