"""A region's lane: halved by throttling at most once per cool-down, widened by successes."""

from __future__ import annotations

from replicator.lanes import Lane


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_throttle_halves_the_limit_even_on_a_clock_that_just_started() -> None:
    lane = Lane(16, clock=Clock(0.0))
    lane.throttled()
    assert (lane.limit, lane.cuts) == (8, 1)


def test_a_burst_of_throttles_within_the_cool_down_is_one_cut() -> None:
    clock = Clock(100.0)
    lane = Lane(16, clock=clock)
    for _ in range(20):
        lane.throttled()
        clock.now += 0.01
    assert (lane.limit, lane.cuts) == (8, 1)
    clock.now += Lane.COOL_DOWN
    lane.throttled()
    assert (lane.limit, lane.cuts) == (4, 2)


def test_the_limit_never_falls_below_one() -> None:
    clock = Clock()
    lane = Lane(3, clock=clock)
    for _ in range(5):
        lane.throttled()
        clock.now += Lane.COOL_DOWN
    assert (lane.limit, lane.cuts) == (1, 5)
    assert lane.free
    lane.active = 1
    assert not lane.free


def test_a_run_of_successes_as_long_as_the_limit_widens_it_by_one_up_to_the_maximum() -> None:
    lane = Lane(4, clock=Clock())
    lane.throttled()
    assert lane.limit == 2
    lane.succeeded()
    assert lane.limit == 2
    lane.succeeded()
    assert lane.limit == 3
    for _ in range(3):
        lane.succeeded()
    assert lane.limit == 4
    for _ in range(10):
        lane.succeeded()
    assert lane.limit == 4


def test_a_throttle_restarts_the_run_of_successes() -> None:
    clock = Clock()
    lane = Lane(8, clock=clock)
    lane.throttled()
    for _ in range(3):
        lane.succeeded()
    clock.now += Lane.COOL_DOWN
    lane.throttled()
    assert lane.limit == 2
    lane.succeeded()
    assert lane.limit == 2  # the three successes before the cut do not count
    lane.succeeded()
    assert lane.limit == 3
