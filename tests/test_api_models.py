"""The API models: defaults, camelCase on the wire, and cross-field rules that name the field."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from kubetune.api import (
    Dataset,
    DatasetFormat,
    LRScheduler,
    Mounts,
    Precision,
    TrainerConfig,
    TrainerResult,
    TuningJob,
    TuningMethod,
)
from kubetune.api.common import BYTE_QUANTITY, quantity_bytes
from kubetune.api.progress import PREFIX, ProgressEvent, Stage, StageEvent, format_event, parse_line, summarize
from kubetune.api.redact import REDACTED, redact


def job(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "baseModel": {"repo": "org/model"},
        "datasets": {"train": [{"dataset": "data"}]},
        "output": {"repo": "org/tuned"},
    }
    base.update(spec)
    return {"apiVersion": "kubetune.io/v1alpha1", "kind": "TuningJob", "metadata": {"name": "j"}, "spec": base}


def error_text(doc: dict[str, Any], model: type = TuningJob) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(doc)
    return str(caught.value)


def test_minimal_manifest_gets_sane_defaults() -> None:
    spec = TuningJob.model_validate(job()).spec
    hp = spec.hyperparameters
    assert spec.method.type is TuningMethod.LORA and spec.method.lora.target_modules == ["all-linear"]
    assert (spec.method.lora.r, spec.method.lora.alpha) == (16, 32)
    assert hp.precision is Precision.BF16 and hp.lr_scheduler is LRScheduler.COSINE
    assert hp.epochs == 3 and 0 < hp.learning_rate < 1e-2 and hp.max_seq_length == 2048
    assert spec.resources.gpus == 1 and spec.resources.gpu_resource_name is None  # operator default applies
    assert spec.output.private is True and spec.backoff_limit == 2 and spec.suspend is False


def test_camel_case_round_trip() -> None:
    doc = job(hyperparameters={"learningRate": 1e-4, "perDeviceBatchSize": 16, "gradientAccumulationSteps": 4,
                               "lrScheduler": "constantWithWarmup"},
              hfTokenSecretRef={"name": "hf-token"}, queueName="gpu-queue")
    parsed = TuningJob.model_validate(doc)
    assert parsed.spec.hyperparameters.per_device_batch_size == 16
    assert parsed.spec.hf_token_secret_ref is not None and parsed.spec.hf_token_secret_ref.key == "token"
    wire = parsed.to_wire()
    assert wire["spec"]["hyperparameters"]["gradientAccumulationSteps"] == 4
    assert wire["spec"]["hfTokenSecretRef"] == {"name": "hf-token", "key": "token"}
    assert "per_device_batch_size" not in str(wire)
    assert TuningJob.model_validate(wire) == parsed


def test_yaml_style_numbers_in_strings_are_read_like_kubectl_would() -> None:
    # PyYAML reads `1e-4` as a string; kubectl reads it as a number. Both must work.
    parsed = TuningJob.model_validate(job(hyperparameters={"learningRate": "1e-4"}))
    assert parsed.spec.hyperparameters.learning_rate == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("spec", "field", "hint"),
    [
        ({"method": {"type": "QLoRA"}}, "method", "quantization is required"),
        ({"method": {"type": "LoRA", "quantization": {"bits": 4}}}, "method", "QLoRA only"),
        ({"baseModel": {"repo": "a/b", "scratch": {}}}, "baseModel", "exactly one of repo, path, scratch"),
        ({"baseModel": {}}, "baseModel", "exactly one"),
        ({"output": {"private": True}}, "output", "set repo"),
        ({"datasets": {"train": []}}, "datasets.train", "at least 1"),
        ({"datasets": {"train": [{"dataset": "d", "source": {"hf": {"repo": "a/b"}}}]}}, "datasets.train.0",
         "exactly one of dataset"),
        ({"datasets": {"train": [{"dataset": "d"}], "validation": [{"dataset": "v"}], "validationSplit": 0.1}},
         "datasets", "not both"),
        ({"task": "textClassification", "datasets": {"train": [{"source": {"hf": {"repo": "a/b"}},
                                                                "format": "alpaca"}]}},
         "spec", "classification.labels"),
        ({"classification": {"labels": ["a"]}}, "spec", "textClassification only"),
        ({"hyperparameters": {"perDeviceBatchSize": 0}}, "hyperparameters.perDeviceBatchSize", "greater than"),
        ({"hyperparameters": {"precision": "int8"}}, "hyperparameters.precision", "bf16"),
        ({"resources": {"memory": "lots"}}, "resources.memory", "pattern"),
        ({"output": {"repo": "not a repo!"}}, "output.repo", "pattern"),
    ],
)
def test_bad_specs_name_the_field(spec: dict[str, Any], field: str, hint: str) -> None:
    text = error_text(job(**spec))
    assert f"spec.{field}" in text or field in text, text
    assert hint in text, text


def test_classification_accepts_labels_or_classification_data() -> None:
    with_labels = job(task="textClassification", classification={"labels": ["pos", "neg"], "multiLabel": True})
    assert TuningJob.model_validate(with_labels).spec.classification.multi_label  # type: ignore[union-attr]
    with_data = job(task="textClassification",
                    datasets={"train": [{"source": {"pvc": {"claimName": "d", "path": "x.jsonl"}},
                                         "format": "classification"}]})
    TuningJob.model_validate(with_data)


def dataset(source: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "kubetune.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "d"},
            "spec": {"source": source, **spec}}


def test_dataset_sources() -> None:
    parsed = Dataset.model_validate(dataset({"hf": {"repo": "tatsu-lab/alpaca"}}))
    assert parsed.spec.source.kind == "hf" and parsed.spec.source.hf.revision == "main"  # type: ignore[union-attr]
    assert parsed.spec.format is DatasetFormat.AUTO and parsed.spec.validation.max_errors == 20
    cm = Dataset.model_validate(dataset({"configMap": {"name": "cm"}}))
    assert cm.spec.source.describe() == "configmap:cm/data.jsonl"
    assert "exactly one" in error_text(dataset({}), Dataset)
    assert "found: hf, url" in error_text(dataset({"hf": {"repo": "a/b"}, "url": {"url": "https://e.x/d"}}), Dataset)
    assert "spec.source.url.url" in error_text(dataset({"url": {"url": "http://e.x/d.jsonl"}}), Dataset)
    assert "'..'" in error_text(dataset({"pvc": {"claimName": "c", "path": "../etc/passwd"}}), Dataset)
    assert "spec.format" in error_text(dataset({"hf": {"repo": "a/b"}}, format="xml"), Dataset)
    url = Dataset.model_validate(dataset({"url": {"url": "https://e.x/d.jsonl"}})).spec.source.url
    assert url is not None and quantity_bytes(url.max_size) == 20 * 2**30
    assert "spec.source.url.maxSize" in error_text(dataset({"url": {"url": "https://e.x/d", "maxSize": "2GB"}}),
                                                   Dataset)


@pytest.mark.parametrize(("quantity", "size"), [("512", 512), ("500M", 500 * 10**6), ("64Ki", 65536),
                                                ("1.5Gi", 3 * 2**29), ("2T", 2 * 10**12)])
def test_byte_quantities_read_as_kubernetes_reads_them(quantity: str, size: int) -> None:
    assert re.match(BYTE_QUANTITY, quantity) and quantity_bytes(quantity) == size


@pytest.mark.parametrize("quantity", ["1ki", "3Gb", "Gi", "-1Gi", "20 Gi"])
def test_byte_quantities_kubernetes_would_refuse_are_refused(quantity: str) -> None:
    assert not re.match(BYTE_QUANTITY, quantity)


def test_mounts_map_volumes_to_folders() -> None:
    mounts = Mounts(pvcs={"data": "/mnt/pvc/data"}, config_maps={"cm": "/mnt/configmaps/cm"})
    assert mounts.path_of_pvc("data", "/a/b.jsonl") == "/mnt/pvc/data/a/b.jsonl"
    assert mounts.path_of_config_map("cm", "data.jsonl") == "/mnt/configmaps/cm/data.jsonl"
    with pytest.raises(KeyError, match="not mounted"):
        mounts.path_of_pvc("other", "x")


def test_trainer_contract_round_trips() -> None:
    config = TrainerConfig(name="j", spec=TuningJob.model_validate(job()).spec, mounts=Mounts(pvcs={"a": "/x"}))
    assert TrainerConfig.model_validate_json(config.model_dump_json(by_alias=True)) == config
    result = TrainerResult.model_validate({"status": "Failed", "reason": "PushFailed", "retryable": True,
                                           "model": {"path": "/workspace/output/final"}})
    assert result.to_wire()["reason"] == "PushFailed"
    with pytest.raises(ValidationError):
        TrainerResult.model_validate({"status": "Failed", "reason": "Bored"})


def test_progress_lines_round_trip_and_fold() -> None:
    event = ProgressEvent(step=5, total_steps=20, epoch=0.25, loss=2.5, learning_rate=1e-4,
                          tokens_per_second=1234.5, eta_seconds=30)
    line = format_event(event)
    assert line.startswith(PREFIX) and "\n" not in line
    assert parse_line("2026-11-22 12:00:00 " + line) == event
    assert event.percent == 25
    assert parse_line("an ordinary log line") is None
    assert parse_line(PREFIX + "{not json") is None
    assert parse_line(PREFIX + '{"event": "progress", "step": -1, "totalSteps": 3}') is None
    log = [
        "loading model",
        format_event(event),
        format_event(ProgressEvent(step=10, total_steps=20, eval_loss=1.9)),
        format_event(StageEvent(stage=Stage.PUBLISHING, message="pushing")),
        "",
    ]
    folded = summarize(log)
    assert folded.progress is not None and folded.progress.step == 10
    assert folded.progress.loss == 2.5 and folded.progress.eval_loss == 1.9  # a later line did not erase loss
    assert folded.stage is not None and folded.stage.stage is Stage.PUBLISHING
    assert folded.plain_lines == ["loading model"]


def test_redact_removes_known_secrets_and_token_shapes() -> None:
    known = "sekrit-value-123"
    shaped = "hf_" + "a1B2" * 8
    text = f"token={known} header Authorization: Bearer abc.def other={shaped} short=abc"
    cleaned = redact(text, [known, None, "abc"])
    assert known not in cleaned and shaped not in cleaned and "abc.def" not in cleaned
    assert cleaned.count(REDACTED) == 3 and "short=abc" in cleaned  # short values are not treated as secrets
