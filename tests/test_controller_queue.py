"""The controller's work queue: client-go's guarantees, without kopf or an API server."""

from __future__ import annotations

import threading

from kubetune.controller.queue import WorkQueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drain(queue: WorkQueue[str]) -> list[str]:
    """Take every key that is ready now, marking each done at once."""
    taken = []
    while (key := queue.get(timeout=0)) is not None:
        taken.append(key)
        queue.done(key)
    return taken


def test_a_key_added_many_times_is_queued_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert drain(queue) == ["a", "b"]


def test_a_key_added_while_processed_runs_again_after_and_never_concurrently() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.add("a")
    queue.add("a")
    # Dirty, but not handed to a second worker while the first one holds it.
    assert len(queue) == 0
    other: list[str | None] = []
    worker = threading.Thread(target=lambda: other.append(queue.get(timeout=0.2)))
    worker.start()
    worker.join()
    assert other == [None]
    queue.done("a")
    assert drain(queue) == ["a"]  # once, however often it was added meanwhile


def test_a_key_not_added_while_processed_does_not_come_back() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.done("a")
    assert queue.get(timeout=0) is None


def test_urgent_keys_go_ahead_and_an_upgrade_moves_a_waiting_key() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("refresh-1")
    queue.add("refresh-2")
    queue.add("new", urgent=True)
    queue.add("refresh-2", urgent=True)  # now needs its children: moves ahead, stays queued once
    queue.add("refresh-1", urgent=False)  # no downgrade
    assert drain(queue) == ["new", "refresh-2", "refresh-1"]


def test_urgent_waiting_counts_the_urgent_lane_only() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("refresh")
    queue.add("new-1", urgent=True)
    queue.add("new-2", urgent=True)
    queue.add("new-1", urgent=True)
    assert queue.urgent_waiting() == 2
    queue.add("refresh", urgent=True)
    assert queue.urgent_waiting() == 3
    assert queue.get(timeout=0) == "new-1" and queue.urgent_waiting() == 2
    drain(queue)
    assert queue.urgent_waiting() == 0


def test_a_dirty_key_keeps_its_urgency() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.add("a", urgent=True)
    queue.add("b")
    queue.done("a")
    assert drain(queue) == ["a", "b"]


def test_add_after_queues_when_due_and_the_earlier_delay_wins() -> None:
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("a", 10)
    queue.add_after("a", 3)   # earlier: wins
    queue.add_after("a", 20)  # later: ignored
    queue.add_after("b", 5)
    assert queue.get(timeout=0) is None and queue.delayed() == 2
    clock.now += 3
    assert drain(queue) == ["a"]
    clock.now += 2
    assert drain(queue) == ["b"]
    clock.now += 100
    assert drain(queue) == [] and queue.delayed() == 0  # the superseded entries of "a" do not fire


def test_a_delayed_key_already_queued_is_not_queued_twice() -> None:
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("a", 1)
    queue.add("a")
    clock.now += 1
    assert drain(queue) == ["a"]


def test_cancel_delayed_drops_a_pending_follow_up() -> None:
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("a", 1)
    queue.cancel_delayed("a")
    clock.now += 5
    assert drain(queue) == []


def test_a_sleeping_worker_wakes_for_a_delayed_key() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 0.05)
    assert queue.get(timeout=5) == "a"


def test_retry_backs_off_exponentially_until_forgotten() -> None:
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(retry_base=0.5, retry_cap=3, clock=clock)
    assert [queue.retry("a") for _ in range(5)] == [0.5, 1, 2, 3, 3]
    queue.forget("a")
    assert queue.retry("a") == 0.5
    assert queue.retry("b") == 0.5  # per key


def test_shut_down_wakes_waiting_workers_and_stops_adds() -> None:
    queue: WorkQueue[str] = WorkQueue()
    results: list[str | None] = []
    workers = [threading.Thread(target=lambda: results.append(queue.get())) for _ in range(3)]
    for worker in workers:
        worker.start()
    queue.shut_down()
    for worker in workers:
        worker.join(5)
    assert results == [None, None, None]
    queue.add("a")
    assert queue.get(timeout=0) is None


def test_once_shut_down_nothing_waiting_counts_as_urgent() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("left-behind", urgent=True)
    assert queue.urgent_waiting() == 1
    queue.shut_down()
    assert queue.urgent_waiting() == 0  # the Event poster must not hold back for work that will not run


def test_many_workers_never_hold_one_key_at_once() -> None:
    queue: WorkQueue[int] = WorkQueue()
    guard = threading.Lock()
    holding: set[int] = set()
    overlaps: list[int] = []
    passes: dict[int, int] = {}

    def work() -> None:
        while (key := queue.get(timeout=0.5)) is not None:
            with guard:
                if key in holding:
                    overlaps.append(key)
                holding.add(key)
                passes[key] = passes.get(key, 0) + 1
                again = passes[key] < 50
            if again:
                queue.add(key)  # an event arrives for the key being worked on
            with guard:
                holding.discard(key)
            queue.done(key)

    for key in range(3):
        queue.add(key)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    queue.shut_down()
    assert overlaps == []
    assert passes == {0: 50, 1: 50, 2: 50}  # every add while held led to exactly one more pass
