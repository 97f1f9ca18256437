import random
from collections import Counter

from pydfs.namenode.placement import Candidate, choose

MiB = 1024 * 1024


def _nodes(*frees: int) -> list[Candidate]:
    return [Candidate(f"dn-{i}", free) for i, free in enumerate(frees)]


def test_chooses_distinct_nodes():
    rng = random.Random(1)
    nodes = _nodes(*([100 * MiB] * 5))
    for _ in range(200):
        chosen = choose(nodes, 3, MiB, rng=rng)
        assert len(chosen) == 3
        assert len(set(chosen)) == 3
        assert set(chosen) <= {n.id for n in nodes}


def test_respects_exclude_and_room_for_a_block():
    rng = random.Random(2)
    nodes = _nodes(100 * MiB, 100 * MiB, MiB - 1, MiB, 100 * MiB)
    for _ in range(200):
        chosen = choose(nodes, 5, MiB, exclude=frozenset({"dn-0"}), rng=rng)
        assert sorted(chosen) == ["dn-1", "dn-3", "dn-4"]


def test_returns_fewer_when_not_enough_candidates():
    nodes = _nodes(10 * MiB, 10 * MiB)
    assert sorted(choose(nodes, 3, MiB, rng=random.Random(3))) == ["dn-0", "dn-1"]
    assert choose(nodes, 3, MiB, exclude=frozenset({"dn-0", "dn-1"})) == []
    assert choose([], 2, MiB) == []
    assert choose(nodes, 0, MiB) == []


def test_weighted_towards_free_space():
    rng = random.Random(4)
    nodes = _nodes(900 * MiB, 100 * MiB)
    firsts = Counter(choose(nodes, 1, MiB, rng=rng)[0] for _ in range(5000))
    ratio = firsts["dn-0"] / firsts["dn-1"]
    assert 6 < ratio < 13  # expected 9


def test_full_nodes_fill_slower_over_many_picks():
    rng = random.Random(5)
    nodes = _nodes(1000 * MiB, 500 * MiB, 250 * MiB, 250 * MiB)
    counts = Counter(n for _ in range(4000) for n in choose(nodes, 2, MiB, rng=rng))
    assert counts["dn-0"] > counts["dn-1"] > counts["dn-2"]
    assert counts["dn-1"] > counts["dn-3"]
    assert sum(counts.values()) == 8000


def test_a_node_whose_disk_refused_a_block_is_chosen_only_when_needed_and_last():
    rng = random.Random(3)
    nodes = [Candidate("dn-0", 100 * MiB, refusing=True), *_nodes(0, MiB, MiB)[1:]]
    for _ in range(200):
        assert sorted(choose(nodes, 2, MiB, rng=rng)) == ["dn-1", "dn-2"]
        chosen = choose(nodes, 3, MiB, rng=rng)
        assert sorted(chosen[:2]) == ["dn-1", "dn-2"] and chosen[2] == "dn-0"
    assert choose(nodes, 1, MiB, exclude=frozenset({"dn-1", "dn-2"}), rng=rng) == ["dn-0"]
