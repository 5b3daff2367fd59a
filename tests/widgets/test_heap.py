"""The heap hold that keeps full garbage collections short while a widget's worker runs."""

import gc

from napari_noise2score.widgets._heap import hold_heap_still


def test_holds_freeze_until_the_last_release_and_release_once():
    assert gc.get_freeze_count() == 0
    first, second = hold_heap_still(), hold_heap_still()
    assert gc.get_freeze_count() > 0
    first()
    first()  # a second release of the same hold changes nothing
    assert gc.get_freeze_count() > 0  # the other job still runs
    second()
    assert gc.get_freeze_count() == 0
