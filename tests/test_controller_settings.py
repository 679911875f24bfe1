"""The controller's one setting: how many worker threads reconcile at once."""

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
