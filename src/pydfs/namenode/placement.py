"""Choosing data nodes for new blocks: pure functions, no I/O.

Nodes are drawn without replacement with a probability proportional to their free space, so that
fuller nodes fill more slowly and concurrent writers spread out instead of all picking the emptiest
node. A node without room for one more block is never chosen; one whose disk refused a block
lately is chosen only when too few others are, and after them (so it heads no pipeline that
another node could head).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Candidate:
    id: str
    free: int
    refusing: bool = False  # its disk refused a block lately


def choose(
    candidates: Sequence[Candidate],
    count: int,
    block_size: int,
    *,
    exclude: frozenset[str] = frozenset(),
    rng: random.Random | None = None,
) -> list[str]:
    """Up to *count* distinct node ids for a block of at most *block_size* bytes."""
    draw = random.uniform if rng is None else rng.uniform  # random.Random() costs 15 µs
    fit = [c for c in candidates if c.id not in exclude and c.free >= block_size]
    chosen: list[str] = []
    for refusing in (False, True):
        pool = [c for c in fit if c.refusing == refusing]
        _draw(pool, count, chosen, draw)
    return chosen


def _draw(
    pool: list[Candidate], count: int, chosen: list[str], draw: Callable[[float, float], float]
) -> None:
    """Add nodes of *pool* to *chosen*, up to *count* in all, each with a chance in proportion
    to its free space."""
    while pool and len(chosen) < count:
        total = sum(c.free for c in pool)
        pick = draw(0, total)
        for i, c in enumerate(pool):
            pick -= c.free
            if pick <= 0 or i == len(pool) - 1:
                chosen.append(c.id)
                del pool[i]
                break
