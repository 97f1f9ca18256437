"""A SQLite store's disk misbehaving, for tests: statements that fail, fsyncs held at a gate."""

from __future__ import annotations

import sqlite3
import threading

from pydfs.namenode.store.sqlite import Store


class FailingStatements:
    """The store's connection, whose *statements* fail with *message* as SQLite's may (busy, a
    full disk, an I/O error): the next *times* of them, or every one (None)."""

    def __init__(
        self, db: sqlite3.Connection, statements: set[str], message: str, *, times: int | None
    ) -> None:
        self._db = db
        self.statements, self.message, self.times = statements, message, times

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql in self.statements and self.times != 0:
            if self.times is not None:
                self.times -= 1
            raise sqlite3.OperationalError(self.message)
        return self._db.execute(sql, *args)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        return getattr(self._db, name)


def gate_fsyncs(
    store: Store, *, threads_only: bool = False
) -> tuple[threading.Event, threading.Event]:
    """Hold *store*'s fsyncs at a gate (a slow disk): each sets the first event returned as it
    begins and waits for the second, up to 10 s. *threads_only*: fsyncs made on the event
    loop's own thread pass. The caller sets the second event when done."""
    started, release = threading.Event(), threading.Event()
    real_sync = store.sync

    def gated() -> None:
        if not threads_only or threading.current_thread() is not threading.main_thread():
            started.set()
            release.wait(10)
        real_sync()

    store.sync = gated  # type: ignore[method-assign]
    return started, release
