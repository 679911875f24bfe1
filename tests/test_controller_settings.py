"""The controller's settings: how many worker threads reconcile at once, how many log reads a second."""

from __future__ import annotations

import pytest

from kubetune.settings import Settings
from kubetune.usererror import UserError


def test_workers_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env().workers == Settings().workers == 8
    monkeypatch.setenv("KUBETUNE_WORKERS", "3")
    assert Settings.from_env().workers == 3


@pytest.mark.parametrize(("value", "problem"), [("0", "at least 1, got 0"), ("many", "an integer, got 'many'")])
def test_a_bad_worker_count_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, value: str,
                                                           problem: str) -> None:
    monkeypatch.setenv("KUBETUNE_WORKERS", value)
    with pytest.raises(UserError, match=f"KUBETUNE_WORKERS must be {problem}"):
        Settings.from_env()


def test_the_log_read_budget_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env().log_reads_per_second == Settings().log_reads_per_second == 20
    monkeypatch.setenv("KUBETUNE_LOG_READS_PER_SECOND", "5")
    assert Settings.from_env().log_reads_per_second == 5
    monkeypatch.setenv("KUBETUNE_LOG_READS_PER_SECOND", "0")
    with pytest.raises(UserError, match="KUBETUNE_LOG_READS_PER_SECOND must be at least 1"):
        Settings.from_env()
