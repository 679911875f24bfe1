"""The rate budget that spreads trainer log refreshes: a burst, then slots at the rate, booked in order."""

from __future__ import annotations

import pytest

from kubetune.controller.budget import RateBudget


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_free_then_slots_come_at_the_rate_in_the_order_booked() -> None:
    clock = Clock()
    budget = RateBudget(2.0, burst=2, clock=clock)
    assert [budget.reserve(), budget.reserve()] == [0.0, 0.0]
    assert [budget.reserve(), budget.reserve(), budget.reserve()] == [0.5, 1.0, 1.5]
    clock.now += 1.5  # the booked slots have come; the balance is back at zero, not above
    assert budget.reserve() == 0.5


def test_an_unbudgeted_read_pushes_the_next_slots_back() -> None:
    clock = Clock()
    budget = RateBudget(1.0, burst=1, clock=clock)
    budget.take()
    budget.take()  # a read that had to happen: the balance goes below zero
    assert budget.reserve() == 2.0


def test_an_idle_budget_saves_up_no_more_than_its_burst() -> None:
    clock = Clock()
    budget = RateBudget(10.0, burst=3, clock=clock)
    clock.now += 3600
    assert [budget.reserve() for _ in range(4)] == [0.0, 0.0, 0.0, 0.1]


def test_a_budget_needs_a_positive_rate() -> None:
    with pytest.raises(ValueError, match="positive rate"):
        RateBudget(0, burst=1)
