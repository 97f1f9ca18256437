"""``pydfs mount``: the arguments; ``pydfs.mount`` does the work (and needs ``pydfs[mount]``)."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from pydfs.mount.service import add_arguments, run

    p = sub.add_parser("mount", help="mount the file system (or a directory of it) on a local path")
    add_arguments(p)
    p.set_defaults(run=run)
