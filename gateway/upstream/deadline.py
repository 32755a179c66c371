"""The deadline of upstream calls: one timer per upstream instead of one per call.

Every call to one upstream has the same allowance (``deadline_s``), so the calls' deadlines come
in the order the calls start. :class:`Deadlines` keeps the calls in flight in that order (an
insertion-ordered dict) and arms a single event-loop timer, for the oldest call's deadline.
When it fires, every call past its deadline is cancelled and the timer is armed again for the
oldest call left; a call that ends just leaves the dict. Under load the timer fires about once
per ``deadline_s``, where ``asyncio.timeout`` armed and cancelled a timer for every call
(about 4 µs of CPU per call on uvloop, bench/RESULTS.md "Data plane v2", step 7).

A call past its deadline sees exactly what ``asyncio.timeout`` gives: its task is cancelled at
its current ``await``, and leaving the ``with`` block turns that ``CancelledError`` into
``TimeoutError`` unless someone else also cancelled the task (then the cancellation goes on).
"""

from __future__ import annotations

import asyncio
from types import TracebackType

__all__ = ["Deadline", "Deadlines"]


class Deadline:
    """One call's deadline: a context manager (plain ``with``) for the call's task."""

    __slots__ = ("_cancelling", "_owner", "_task", "expired", "when")

    def __init__(self, owner: Deadlines, task: asyncio.Task[object], when: float) -> None:
        self._owner = owner
        self._task = task
        self._cancelling = task.cancelling()
        self.when = when
        self.expired = False

    def __enter__(self) -> Deadline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._owner._pending.pop(self, None)
        if (
            self.expired
            and self._task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc

    def _expire(self) -> None:
        self.expired = True
        self._task.cancel()


class Deadlines:
    """The deadlines of one upstream's calls, ``seconds`` each, on one timer (see the module
    docstring). Use from the event loop's thread; a new running loop starts afresh."""

    __slots__ = ("_handle", "_loop", "_pending", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._pending: dict[Deadline, None] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> Deadline:
        """The current task's deadline, ``seconds`` from now: use it as ``with`` around the
        call. Raises RuntimeError outside a task."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a deadline needs a task")
        if loop is not self._loop:  # first use, or a new loop: the old one's timer is gone
            self._loop, self._handle = loop, None
            self._pending = {}
        deadline = Deadline(self, task, loop.time() + self.seconds)
        self._pending[deadline] = None
        if self._handle is None:
            self._handle = loop.call_at(deadline.when, self._fire)
        return deadline

    def _fire(self) -> None:
        """The timer: cancel every call past its deadline, then wait for the oldest left."""
        self._handle = None
        loop = self._loop
        assert loop is not None
        now = loop.time()
        expired = []
        for deadline in self._pending:  # oldest first: deadlines come in insertion order
            if deadline.when > now:
                self._handle = loop.call_at(deadline.when, self._fire)
                break
            expired.append(deadline)
        for deadline in expired:
            del self._pending[deadline]
            deadline._expire()
