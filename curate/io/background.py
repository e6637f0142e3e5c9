"""One background thread that consumes a bounded queue of work items.

Stage writers encode and compress output (pyarrow and polars release the GIL for most of it)
while the caller reads and maps the next batch: on two cores that overlap is most of the
difference to a plain copy. The queue holds at most ``depth`` items, so memory stays bounded;
an error in the thread is raised in the caller's thread by the next ``put`` or by ``close``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class Background:
    def __init__(self, work: Callable[[object], None], name: str, depth: int = 2):
        self._work = work
        self._name = name
        self._depth = depth
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def put(self, item) -> None:
        """Queue ``item`` (blocks while the queue is full); the thread starts on first use."""
        self.raise_error()
        if self._thread is None:
            self._queue = queue.Queue(maxsize=self._depth)
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._queue.put(item)

    def raise_error(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:  # after an error, keep draining so the caller never blocks
                try:
                    self._work(item)
                except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                    self._error = e

    def stop(self) -> None:
        """Finish the queued items and end the thread (errors stay pending)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        """Finish the queued items; raise the thread's error, if any."""
        self.stop()
        self.raise_error()
