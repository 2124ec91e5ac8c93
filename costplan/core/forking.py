"""Work handed to a forked child, its answer waited for later: the one way costplan uses a second processor.

A build's stages are pure functions of data already in memory, so a
``fork`` of this process can run one of them with nothing to set up and
only send its answer back (pickled through a pipe). The plan's semantic
checks run beside the generators this way, and rendering shares beside
each other (``output.parallel``).

Forking is used only where it is safe: on Linux, with no other thread
running (a child would inherit locks held by threads that do not exist in
it). Anywhere else ``start`` runs the work at once, here: the answer is the
same, only later.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

from costplan.core.errors import InternalError

R = TypeVar("R")

Pending = Callable[[], R]
"""Waits for the work's answer and returns it (or raises the work's exception here)."""


def can_fork() -> bool:
    return sys.platform == "linux" and threading.active_count() == 1


def start(work: Callable[[], R]) -> Pending[R]:
    """``work()`` in a forked child when ``can_fork()``, else here and now; the function returned gives its answer.

    ``work`` must depend on nothing but what this process holds now, and
    must not print: its output would interleave with this process's. The
    child sends ``(True, answer)`` or ``(False, exception)`` and leaves with
    ``os._exit``: no exit handlers, no flushing of buffers it shares with
    this process. Its exception is raised by the waiting function as this
    process's own.
    """
    if not can_fork():
        try:
            answer = work()
        except Exception as exc:  # noqa: BLE001 - raised when the answer is asked for, as from a child
            failure = exc

            def fail() -> R:
                raise failure

            return fail
        return lambda: answer
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        status = 0
        try:
            os.close(read_end)
            try:
                payload = pickle.dumps((True, work()), protocol=pickle.HIGHEST_PROTOCOL)
            except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
                try:
                    payload = pickle.dumps((False, exc), protocol=pickle.HIGHEST_PROTOCOL)
                except Exception:  # noqa: BLE001 - an exception that does not pickle
                    payload = pickle.dumps((False, InternalError(f"{type(exc).__name__}: {exc}")))
            with os.fdopen(write_end, "wb") as out:
                out.write(payload)
        except BaseException:  # noqa: BLE001 - the parent is gone or the pipe broke
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    outcome: list[tuple[bool, R | BaseException]] = []

    def wait() -> R:
        if not outcome:
            with os.fdopen(read_end, "rb") as answer:
                payload = answer.read()
            _, status = os.waitpid(pid, 0)
            if not payload:
                outcome.append((False, InternalError(f"a forked stage ended without an answer (status {status})")))
            else:
                outcome.append(pickle.loads(payload))  # noqa: S301 - our own child's answer
        ok, value = outcome[0]
        if not ok:
            raise value  # type: ignore[misc]
        return value  # type: ignore[return-value]

    return wait
