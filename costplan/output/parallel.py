"""Rendering on several processors: shares of a list worked on in forked children.

Turning objects into YAML is most of a large build's time, and every object
is text of its own, so the work splits without changing a byte: item ``i``
goes to share ``i % jobs``, each share is worked on in a process of its own
(the first in this one), and the results come back in item order. A child
is a ``fork`` of this process: it starts with every object already in
memory, and only its results (text) travel back, pickled through a pipe.

Forking is used only where it is safe and pays: on Linux, with no other
thread running (a child would inherit locks held by threads that do not
exist in it), and for lists long enough that a fork costs less than it
saves. Anywhere else the work runs here, in order: the output is the same.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from costplan.core.errors import InternalError

T = TypeVar("T")
R = TypeVar("R")

MIN_ITEMS_PER_JOB = 50
"""Below this many items a share, a fork costs more than the share's work (a few ms of rendering)."""
MAX_JOBS = 4
JOBS_VARIABLE = "COSTPLAN_JOBS"
"""The environment variable ``build --jobs`` is read from."""


def default_jobs() -> int:
    """The processors this process may use, at most ``MAX_JOBS`` (``build --jobs`` / ``COSTPLAN_JOBS`` choose otherwise)."""
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    return max(1, min(available, MAX_JOBS))


def can_fork() -> bool:
    return sys.platform == "linux" and threading.active_count() == 1


def map_shares(work: Callable[[Sequence[T]], list[R]], items: Sequence[T], jobs: int) -> list[R]:
    """``work(items)``, the items shared out over up to ``jobs`` processes; results in item order.

    ``work`` must return one result per item, in the order given, and
    depend on nothing but its items and what the process held when it
    forked.
    """
    jobs = min(jobs, len(items) // MIN_ITEMS_PER_JOB)
    if jobs < 2 or not can_fork():
        return work(items)
    shares = [items[k::jobs] for k in range(jobs)]
    waits = [_forked(work, share) for share in shares[1:]]
    try:
        mine = work(shares[0])
    finally:
        others = [wait() for wait in waits]
    results: list[R] = [None] * len(items)  # type: ignore[list-item]
    for k, share_results in enumerate([mine, *others]):
        if len(share_results) != len(shares[k]):
            raise InternalError(f"a rendering share returned {len(share_results)} results for {len(shares[k])} items")
        results[k::jobs] = share_results
    return results


def _forked(work: Callable[[Sequence[T]], list[R]], share: Sequence[T]) -> Callable[[], list[R]]:
    """Start ``work(share)`` in a forked child; the function returned waits for its results.

    The child sends ``(True, results)`` or ``(False, exception)`` and leaves
    with ``os._exit``: no exit handlers, no flushing of buffers it shares
    with this process. Its exception is raised here as this process's own.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        status = 0
        try:
            os.close(read_end)
            try:
                payload = pickle.dumps((True, work(share)), protocol=pickle.HIGHEST_PROTOCOL)
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

    def wait() -> list[R]:
        with os.fdopen(read_end, "rb") as answer:
            payload = answer.read()
        _, status = os.waitpid(pid, 0)
        if not payload:
            raise InternalError(f"a rendering process ended without a result (status {status})")
        ok, value = pickle.loads(payload)  # noqa: S301 - our own child's answer
        if not ok:
            raise value
        return value

    return wait
