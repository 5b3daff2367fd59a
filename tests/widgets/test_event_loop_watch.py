"""The stall watch used by the GUI responsiveness test names what blocked the GUI thread."""

import time

import numpy as np

from helpers import EventLoopWatch


def _block_the_gui_thread():
    time.sleep(0.25)


def test_a_stall_is_timed_and_its_stack_written(qtbot):
    from qtpy.QtCore import QTimer

    watch = EventLoopWatch(dump_after=0.08)
    watch.start()
    qtbot.wait(100)
    QTimer.singleShot(0, _block_the_gui_thread)
    qtbot.wait(200)
    watch.stop()
    gaps = np.diff(np.asarray(watch.ticks))
    worst = int(np.argmax(gaps))
    assert gaps[worst] >= 0.25
    assert "_block_the_gui_thread" in watch.stacks_at(worst)
    assert watch.stacks_at(int(np.argmin(gaps))) == ""  # a short gap has no dump
