"""The fast path reads a query string as aiohttp does (``parse_qsl``, the first of repeated
parameters), also where it skips ``parse_qsl`` because nothing needs unquoting."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pydfs.fastpath import _query


def _aiohttps(qs: str) -> dict[str, str]:
    query: dict[str, str] = {}
    for key, value in parse_qsl(qs, keep_blank_values=True, errors="strict"):
        query.setdefault(key, value)
    return query


@pytest.mark.parametrize(
    "qs",
    ["", "path=/a", "path=/a&read=1", "a=1&&b=2", "a&b=", "=x", "a=1&a=2", "a==b", "&", "p=/a b"],
)
def test_a_plain_query_reads_as_parse_qsl_does(qs: str) -> None:
    assert _query(qs) == _aiohttps(qs)


@given(st.text(alphabet="ab=&/.%2B+ xé", max_size=30))
def test_any_query_reads_as_parse_qsl_does(qs: str) -> None:
    try:
        expected: dict[str, str] | None = _aiohttps(qs)
    except UnicodeDecodeError:
        expected = None
    assert _query(qs) == expected
