"""Progress bars: shown on a terminal for large transfers, never otherwise."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import Cli


def _on_terminal(cli: Cli, *args: str) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; return its exit code and screen."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pydfs", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env={**cli.env, "COLUMNS": "120", "TERM": "xterm"},
        cwd=cli.home,
    )
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                screen += chunk
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
    return proc.wait(30), screen.decode(errors="replace")


def test_progress_bar_on_a_terminal_only(cli: Cli, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(24 * 1024 * 1024))
    code, screen = _on_terminal(cli, "put", str(big), "/progress-big")
    assert code == 0, screen
    assert "put big.bin" in screen and "MiB" in screen  # the bar: label, bytes, rate

    code, screen = _on_terminal(cli, "--quiet", "put", str(big), "/progress-quiet")
    assert code == 0 and screen.strip() == "", screen

    plain = cli("put", str(big), "/progress-plain").ok()  # not a terminal: no bar
    assert "MiB/s" not in plain.err and plain.err == ""

    code, screen = _on_terminal(cli, "get", "/progress-big", str(tmp_path / "back.bin"))
    assert code == 0 and "get progress-big" in screen, screen
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()

    small = tmp_path / "small.txt"
    small.write_bytes(b"tiny")
    code, screen = _on_terminal(cli, "put", str(small), "/progress-small")
    assert code == 0 and "put small.txt" not in screen  # too small to bother
