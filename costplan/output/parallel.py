"""Rendering on several processors: shares of a list worked on in forked children.

Turning objects into YAML is most of a large build's time, and every object
is text of its own, so the work splits without changing a byte: item ``i``
goes to share ``i % jobs``, each share is worked on in a process of its own
(the first in this one), and the results come back in item order. A child
is a ``fork`` of this process: it starts with every object already in
memory, and only its results (text) travel back, pickled through a pipe.

Forking is used only where it is safe (``forking.can_fork``) and pays: for
lists long enough that a fork costs less than it saves. Anywhere else the
work runs here, in order: the output is the same.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import TypeVar

from costplan.core import forking
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


def map_shares(
    work: Callable[[Sequence[T]], list[R]],
    items: Sequence[T],
    jobs: int,
    meanwhile: Callable[[], None] | None = None,
) -> list[R]:
    """``work(items)``, the items shared out over up to ``jobs`` processes; results in item order.

    ``work`` must return one result per item, in the order given, and
    depend on nothing but its items and what the process held when it
    forked. ``meanwhile`` runs in this process while the shares are worked
    on elsewhere (then this process takes no share: the processors are
    the children's), or first when nothing forks; if it raises, the shares'
    results are waited for and dropped, and its exception propagates.
    """
    jobs = min(jobs, len(items) // MIN_ITEMS_PER_JOB)
    if jobs < 2 or not forking.can_fork():
        if meanwhile is not None:
            meanwhile()
        return work(items)
    shares = [items[k::jobs] for k in range(jobs)]
    here = meanwhile is None  # else every share goes to a child
    waits = [forking.start(functools.partial(work, share)) for share in shares[1 if here else 0:]]
    outputs: list[list[R] | BaseException] = []
    try:
        if meanwhile is not None:
            meanwhile()
        else:
            outputs.append(work(shares[0]))
    finally:
        outputs.extend(_answer(wait) for wait in waits)
    results: list[R] = [None] * len(items)  # type: ignore[list-item]
    for k, output in enumerate(outputs):
        if isinstance(output, BaseException):
            raise output
        if len(output) != len(shares[k]):
            raise InternalError(f"a rendering share returned {len(output)} results for {len(shares[k])} items")
        results[k::jobs] = output
    return results


def _answer(wait: forking.Pending[list[R]]) -> list[R] | BaseException:
    """A share's results, or its exception (every child is waited for before any is raised)."""
    try:
        return wait()
    except Exception as exc:  # noqa: BLE001 - raised by the caller once all children are reaped
        return exc
