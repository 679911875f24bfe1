"""Which failed requests the operator tells on the object (controller/refusals.py), and how often."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from kubetune.controller.refusals import RefusalLog, refusal_message


def api_error(status: int, message: str | None, reason: str = "Reason") -> ApiException:
    error = ApiException(status=status, reason=reason)
    error.body = json.dumps({"kind": "Status", "message": message}) if message is not None else "not json"
    return error


@pytest.mark.parametrize("status", [500, 503, 409, 404, 429])
def test_what_a_retry_can_heal_is_not_told(status: int) -> None:
    assert refusal_message(api_error(status, "anything")) is None


def test_other_failures_are_not_refusals() -> None:
    assert refusal_message(RuntimeError("boom")) is None


def test_an_rbac_refusal_says_what_was_refused_and_what_to_do() -> None:
    said = 'jobs.batch is forbidden: User "sa" cannot create resource "jobs" in API group "batch"'
    message = refusal_message(api_error(403, said))
    assert message is not None
    assert said in message and "(403)" in message
    assert "rbac.create" in message and "watchNamespaces" in message and "keeps retrying" in message


def test_an_invalid_object_points_at_admission_or_validation() -> None:
    message = refusal_message(api_error(422, 'Job.batch "x" is invalid: spec.template: Invalid value'))
    assert message is not None and "admission policy or the API server's validation" in message
    assert 'spec.template: Invalid value' in message


def test_a_body_that_is_not_a_status_falls_back_to_the_reason() -> None:
    message = refusal_message(api_error(400, None, reason="Bad Request"))
    assert message is not None and "Bad Request" in message


def test_the_same_refusal_is_news_once_per_object_until_a_pass_goes_through() -> None:
    log = RefusalLog()
    key, other = ("TuningJob", "ns", "a"), ("TuningJob", "ns", "b")
    assert log.is_news(key, "m1")
    assert not log.is_news(key, "m1")
    assert log.is_news(other, "m1")
    assert log.is_news(key, "m2"), "a different refusal is news"
    log.cleared(key)
    assert log.is_news(key, "m2")
