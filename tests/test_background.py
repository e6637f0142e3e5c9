"""curate.io.background: the writer thread every stage output uses."""

import threading

import pytest

from curate.io.background import Background


def test_items_are_worked_in_order_and_close_waits_for_them():
    done = []
    bg = Background(done.append, "t", depth=2)
    for i in range(50):
        bg.put(i)
    bg.close()
    assert done == list(range(50))


def test_an_error_in_the_thread_reaches_the_caller_once_and_the_queue_keeps_draining():
    gate = threading.Event()
    seen = []

    def work(item):
        seen.append(item)
        if item == 1:
            gate.set()
            raise OSError("disk full")

    bg = Background(work, "t", depth=1)
    bg.put(0)
    bg.put(1)
    gate.wait(5)
    with pytest.raises(OSError, match="disk full"):
        for i in range(2, 20):  # raised by a later put: never blocks on a dead consumer
            bg.put(i)
    bg.close()  # the error was handed over already
    assert seen[:2] == [0, 1] and all(i < 2 for i in seen)


def test_close_raises_an_error_the_puts_did_not_see_and_stop_does_not():
    def work(item):
        raise ValueError("bad batch")

    bg = Background(work, "t")
    bg.put(0)
    bg.stop()
    with pytest.raises(ValueError, match="bad batch"):
        bg.close()
    Background(work, "t").close()  # never started: nothing to do
