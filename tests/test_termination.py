"""One writer for the termination message: any contract model, redacted, whole JSON in 4096 bytes."""

from __future__ import annotations

from pathlib import Path

from kubetune.api.contract import TERMINATION_MESSAGE_LIMIT, FailureReason, TrainerResult, ValidationReport
from kubetune.api.dataset import RowError
from kubetune_trainer.termination import (
    fit_termination_message,
    termination_json,
    write_termination_message,
)

SECRET = "hf_" + "S" * 34


def size(text: str) -> int:
    return len(text.encode("utf-8"))


def test_a_small_message_is_only_redacted() -> None:
    result = TrainerResult(status="Failed", reason=FailureReason.PUSH_FAILED, retryable=True,
                           message=f"push refused for token {SECRET}", model={"path": "/work/final"})
    fitted = fit_termination_message(result, [SECRET])
    assert fitted == result.model_copy(update={"message": "push refused for token ***"})


def test_a_trainer_result_gives_up_prose_then_optional_parts_never_cutting_identifiers() -> None:
    path = "/mnt/pvc/models/" + "p" * 1500
    result = TrainerResult(
        status="Failed", reason=FailureReason.PUSH_FAILED, retryable=True, message=f"{SECRET} " + "why " * 500,
        model={"repo": "org/model", "revision": "a" * 40, "url": "https://hub.example/" + "u" * 3000, "path": path},
    )
    assert size(termination_json(result)) > TERMINATION_MESSAGE_LIMIT
    fitted = fit_termination_message(result, [SECRET])
    text = termination_json(fitted)
    assert size(text) <= TERMINATION_MESSAGE_LIMIT
    parsed = TrainerResult.model_validate_json(text)
    assert (parsed.status, parsed.reason, parsed.retryable) == ("Failed", FailureReason.PUSH_FAILED, True)
    assert parsed.model is not None and parsed.model.url is None, "the biggest optional part went"
    assert (parsed.model.repo, parsed.model.revision, parsed.model.path) == ("org/model", "a" * 40, path)
    assert parsed.message is not None and parsed.message.startswith("*** why why") and SECRET not in text


def test_a_report_halves_its_lists_but_keeps_whole_labels() -> None:
    labels = [f"label-{i:05d}-" + "x" * 20 for i in range(2000)]
    report = ValidationReport(outcome="Invalid", reason=FailureReason.DATASET_INVALID, message="m" * 2000,
                              rows=10, valid_rows=0, error_count=10, labels=labels,
                              errors=[RowError(row=i, field="text", message="bad " * 200) for i in range(1, 11)],
                              preview=["p" * 500] * 3)
    fitted = fit_termination_message(report)
    text = termination_json(fitted)
    assert size(text) <= TERMINATION_MESSAGE_LIMIT
    parsed = ValidationReport.model_validate_json(text)
    assert parsed.labels and parsed.labels == labels[:len(parsed.labels)]
    assert parsed.errors and parsed.errors[0].row == 1 and parsed.error_count == 10
    assert all(len(e.message) <= 300 for e in parsed.errors)


def test_the_writer_leaves_dev_alone_outside_a_pod(tmp_path: Path) -> None:
    write_termination_message('{"status":"Succeeded"}', str(tmp_path / "deep" / "result.json"))
    assert (tmp_path / "deep" / "result.json").read_text() == '{"status":"Succeeded"}'
    write_termination_message("{}", "/dev/termination-log")  # absent outside a Pod: nothing happens
