"""The divergence detector: NaN/inf at once, a sustained spike after `patience`, noise never."""

from __future__ import annotations

import math

import pytest

from kubetune.api.guardrails import DivergenceSpec
from kubetune_trainer.training.divergence import DivergenceDetector


def feed(detector: DivergenceDetector, losses: list[float], first_step: int = 1) -> list[int]:
    """Steps at which the detector said 'diverged'."""
    return [step for step, loss in enumerate(losses, start=first_step) if detector.observe(step, loss) is not None]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_nan_or_infinite_loss_diverges_at_once(bad: float) -> None:
    detector = DivergenceDetector(DivergenceSpec())
    assert feed(detector, [2.0, 1.9, bad]) == [3]
    assert detector.diverged is not None and detector.diverged.step == 3
    assert detector.last_good_step == 2


def test_a_falling_noisy_loss_never_diverges() -> None:
    losses = [3.0 / (1 + 0.1 * i) * (1.3 if i % 7 == 0 else 1.0) for i in range(200)]
    detector = DivergenceDetector(DivergenceSpec())
    assert feed(detector, losses) == []
    assert detector.last_good_step == 200 and not detector.suspect


def test_a_sustained_spike_diverges_after_patience_and_a_short_one_does_not() -> None:
    spec = DivergenceSpec(spike_factor=3.0, window=5, patience=3)
    short = DivergenceDetector(spec)
    assert feed(short, [1.0, 1.1, 0.9, 1.0, 5.0, 6.0, 1.0, 0.95]) == []
    assert not short.suspect and short.last_good_step == 8

    sustained = DivergenceDetector(spec)
    assert feed(sustained, [1.0, 1.1, 0.9, 1.0, 5.0, 6.0, 7.0, 8.0])[0] == 7
    diverged = sustained.diverged
    assert diverged is not None and diverged.step == 7 and "since step 5" in diverged.why
    assert sustained.last_good_step == 4, "spikes are not good steps"


def test_the_run_is_suspect_while_spiking_and_spikes_stay_out_of_the_median() -> None:
    detector = DivergenceDetector(DivergenceSpec(spike_factor=2.0, window=3, patience=10))
    feed(detector, [1.0, 1.0, 1.0])
    for step in range(4, 13):  # nine spikes on a plateau at 5x: the bar stays at 2x the old median
        assert detector.observe(step, 5.0) is None and detector.suspect
    assert detector.observe(13, 5.0) is not None  # the tenth


def test_too_little_history_is_not_judged_and_disabled_never_fires() -> None:
    detector = DivergenceDetector(DivergenceSpec(patience=1))
    assert feed(detector, [1.0, 100.0]) == [], "two losses are too few to call a spike"
    off = DivergenceDetector(DivergenceSpec(enabled=False))
    assert feed(off, [1.0, math.nan, 1e9]) == [] and not off.suspect
