"""The client's modules import one way: ``aio`` uses ``transfer`` and ``files``, and neither of
those uses ``aio``, so that the file objects and the mount move data through ``Transfer``
rather than through ``AsyncClient``'s insides."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import pydfs.client

CLIENT = Path(pydfs.client.__file__).parent


def _loaded_after(module: str) -> set[str]:
    """The ``pydfs.client`` modules a fresh interpreter holds after importing *module*."""
    code = f"import sys, {module}; print(*[m for m in sys.modules if m.startswith('pydfs.client')])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


@pytest.mark.parametrize("module", ["pydfs.client.files", "pydfs.client.transfer"])
def test_file_objects_and_transfer_load_without_the_client(module: str) -> None:
    loaded = _loaded_after(module)
    assert module in loaded
    assert "pydfs.client.aio" not in loaded


def test_the_client_loads_its_file_objects_only_when_a_file_is_opened() -> None:
    loaded = _loaded_after("pydfs.client.aio")
    assert "pydfs.client.transfer" in loaded
    assert "pydfs.client.files" not in loaded


@pytest.mark.parametrize("name", ["files.py", "transfer.py"])
def test_no_import_of_the_client_even_for_type_checking(name: str) -> None:
    tree = ast.parse((CLIENT / name).read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert "pydfs.client.aio" not in imported
