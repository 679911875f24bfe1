"""The validator end to end: verdicts, row-numbered errors, the 4 KiB report, token stats, memory."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.contract import TERMINATION_MESSAGE_LIMIT, ExitCode, FailureReason, ValidationReport, ValidatorConfig
from kubetune.api.dataset import DatasetFormat
from kubetune_trainer.data.validate import validate_dataset
from kubetune_trainer.termination import fit_termination_message, termination_json
from kubetune_trainer.validatecli import main
from support.hubserver import HubServer, hub_server_fixture  # noqa: F401

SECRET = "hf_" + "Q" * 34


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def config_for(folder: Path, name: str, **fields: Any) -> ValidatorConfig:
    return ValidatorConfig.model_validate({
        "name": "rows", "source": {"pvc": {"claimName": "data", "path": name}},
        "mounts": {"pvcs": {"data": str(folder)}}, "resultPath": str(folder / "result.json"), **fields,
    })


def chat_row(*turns: tuple[str, str]) -> dict[str, Any]:
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


GOOD = chat_row(("user", "What is 2+2?"), ("assistant", "4"))


def test_bad_rows_are_listed_with_row_number_and_field(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "chat.jsonl", [
        GOOD,
        chat_row(("user", "Q"), ("assistant", "")),                         # row 2
        '{"messages": [oops\n',                                               # row 3
        GOOD,
        chat_row(("user", "Q"), ("user", "Q again"), ("assistant", "A")),   # row 5
        {"messages": [{"role": "user", "content": "Q"}, {"role": "bot", "content": "A"}]},  # row 6
        chat_row(("user", "Q")),                                              # row 7
        "\n",                                                                 # blank: not a row
        ["not", "an", "object"],                                              # row 8
    ])
    report = validate_dataset(config_for(tmp_path, "chat.jsonl"), token=None)
    assert report.outcome == "Invalid" and report.reason is FailureReason.DATASET_INVALID
    assert (report.rows, report.valid_rows, report.error_count) == (8, 2, 6)
    assert report.detected_format is DatasetFormat.MESSAGES
    assert [(e.row, e.field) for e in report.errors] == [
        (2, "messages[1].content"), (3, ""), (5, "messages[1].content"), (6, "messages[1].role"),
        (7, "messages"), (8, ""),
    ]
    assert "not valid JSON" in report.errors[1].message
    assert "merge them" in report.errors[2].message
    assert report.message is not None and report.message.startswith("6 defect(s) in 8 rows; first at row 2")


@pytest.mark.parametrize(("fmt", "row"), [
    (DatasetFormat.ALPACA, {"instruction": "Q", "input": "", "output": "A"}),
    (DatasetFormat.MESSAGES, GOOD),
    (DatasetFormat.SHAREGPT, {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}),
    (DatasetFormat.YANDEX, {"request": [{"role": "user", "text": "Q"}], "response": "A"}),
    (DatasetFormat.PROMPT_COMPLETION, {"prompt": "Q", "completion": "A"}),
    (DatasetFormat.TEXT, {"text": "plain text"}),
    (DatasetFormat.CLASSIFICATION, {"text": "fine", "label": "ok"}),
])
def test_every_format_is_detected_and_ready(tmp_path: Path, fmt: DatasetFormat, row: dict[str, Any]) -> None:
    write_jsonl(tmp_path / "d.jsonl", [row] * 5)
    report = validate_dataset(config_for(tmp_path, "d.jsonl"), token=None)
    assert (report.outcome, report.detected_format, report.rows, report.valid_rows) == ("Ready", fmt, 5, 5)
    assert report.error_count == 0 and report.errors == [] and len(report.preview) == 3
    assert report.revision is not None and report.revision.startswith("sha256:")
    assert report.size_bytes == (tmp_path / "d.jsonl").stat().st_size


def test_declared_format_is_checked_not_detected(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"text": "plain"}] * 3)
    report = validate_dataset(config_for(tmp_path, "d.jsonl", format="alpaca"), token=None)
    assert report.outcome == "Invalid" and report.error_count == 3
    assert report.errors[0].field == "instruction" and "missing" in report.errors[0].message


def test_undetectable_data_is_invalid_with_the_keys_seen(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"question": "Q", "reply": "A"}] * 70)
    report = validate_dataset(config_for(tmp_path, "d.jsonl"), token=None)
    assert report.outcome == "Invalid" and report.rows == 70 and report.detected_format is None
    assert report.errors[0].row == 0 and "question, reply" in report.errors[0].message
    assert report.revision is not None


def test_empty_data_is_invalid(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text("\n\n")
    report = validate_dataset(config_for(tmp_path, "d.jsonl", format="text"), token=None)
    assert (report.outcome, report.rows, report.error_count) == ("Invalid", 0, 0)
    assert report.message is not None and "no rows" in report.message


def test_labels_found_and_unknown_labels(tmp_path: Path) -> None:
    rows = [{"text": "a", "label": "pos"}, {"text": "b", "label": ["neg", "spam"]}, {"text": "c", "label": "meh"}]
    write_jsonl(tmp_path / "d.jsonl", rows)
    report = validate_dataset(config_for(tmp_path, "d.jsonl"), token=None)
    assert report.outcome == "Ready" and report.labels == ["pos", "neg", "spam", "meh"]
    report = validate_dataset(config_for(tmp_path, "d.jsonl", labels=["pos", "neg", "spam"]), token=None)
    assert report.outcome == "Invalid" and [(e.row, e.field) for e in report.errors] == [(3, "label")]
    assert report.labels == ["pos", "neg", "spam"]


def test_max_errors_caps_the_list_but_all_are_counted(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [GOOD] + [chat_row(("user", "Q"))] * 40)
    report = validate_dataset(config_for(tmp_path, "d.jsonl", validation={"maxErrors": 5}), token=None)
    assert len(report.errors) == 5 and report.error_count == 40 and report.valid_rows == 1
    assert [e.row for e in report.errors] == [2, 3, 4, 5, 6]


def test_source_failures_are_failed_reports(tmp_path: Path) -> None:
    report = validate_dataset(config_for(tmp_path, "missing.jsonl"), token=None)
    assert (report.outcome, report.reason) == ("Failed", FailureReason.DATASET_NOT_FOUND)


def test_report_fits_the_termination_message_with_long_everything(tmp_path: Path) -> None:
    long = "Ж" * 3000  # two bytes per character in UTF-8
    rows = [GOOD] * 3 + [{"messages": [{"role": f"r{long}{i}", "content": "x"}]} for i in range(300)]
    rows += [{"text": long, "label": f"label-{i}-{long[:200]}"} for i in range(5)]
    write_jsonl(tmp_path / "d.jsonl", rows)
    report = validate_dataset(config_for(tmp_path, "d.jsonl", validation={"maxErrors": 100}), token=None)
    assert report.error_count == 305 and len(report.errors) == 100
    assert len(termination_json(report).encode()) > TERMINATION_MESSAGE_LIMIT  # the shrinking is needed
    fitted = fit_termination_message(report)
    text = termination_json(fitted)
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    parsed = ValidationReport.model_validate_json(text)  # whole JSON, valid against the contract
    assert parsed.error_count == 305 and parsed.rows == report.rows and parsed.revision == report.revision
    assert 1 <= len(parsed.errors) < 100 and parsed.errors[0].row == 4


def run_main(config: ValidatorConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str],
             monkeypatch: pytest.MonkeyPatch, *extra: str) -> tuple[int, str, dict[str, Any]]:
    monkeypatch.setenv("KUBETUNE_DATA_TOKEN", SECRET)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(json.dumps(config.to_wire()))
    code = main(["--config", str(config_file), *extra])
    out = capsys.readouterr().out
    return code, out, json.loads(out.strip().splitlines()[-1])


def test_main_prints_summary_and_json_and_writes_the_result(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # The token turns up in the data: neither the preview nor the errors may show it.
    write_jsonl(tmp_path / "d.jsonl", [chat_row(("user", f"my token is {SECRET}"), ("assistant", "ok"))] * 3
                + [chat_row(("user", "Q"), ("assistant", "A"), ("user", SECRET))])
    code, out, printed = run_main(config_for(tmp_path, "d.jsonl"), tmp_path, capsys, monkeypatch)
    assert code == ExitCode.PERMANENT
    assert out.startswith("Dataset default/rows: Invalid (DatasetInvalid)")
    assert "row 4 messages[2]: the conversation ends with a user turn" in out
    written = (tmp_path / "result.json").read_text()
    assert json.loads(written) == printed and printed["outcome"] == "Invalid"
    assert SECRET not in out and SECRET not in written
    assert "my token is ***" in printed["preview"][0]

    write_jsonl(tmp_path / "d.jsonl", [GOOD])
    other = tmp_path / "elsewhere.json"
    code, out, printed = run_main(config_for(tmp_path, "d.jsonl"), tmp_path, capsys, monkeypatch,
                                  "--result-path", str(other))
    assert code == ExitCode.OK and printed["outcome"] == "Ready"
    assert json.loads(other.read_text()) == printed


def test_main_exit_codes_for_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, printed = run_main(config_for(tmp_path, "missing.jsonl"), tmp_path, capsys, monkeypatch)
    assert (code, printed["outcome"], printed["reason"]) == (ExitCode.PERMANENT, "Failed", "DatasetNotFound")

    unreachable = ValidatorConfig.model_validate({
        "name": "hub", "source": {"hf": {"repo": "team/rows", "endpoint": "http://127.0.0.1:9"}},
        "resultPath": str(tmp_path / "result.json"),
    })
    code, out, printed = run_main(unreachable, tmp_path, capsys, monkeypatch)
    assert (code, printed["reason"]) == (ExitCode.RETRYABLE, "Unreachable")
    assert SECRET not in out

    (tmp_path / "bad.yaml").write_text("contractVersion: '1.0'\nname: x\nsource: {pvc: {claimName: d}}\n")
    code = main(["--config", str(tmp_path / "bad.yaml"), "--result-path", str(tmp_path / "r.json")])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (code, printed["reason"]) == (ExitCode.PERMANENT, "InvalidConfig")
    assert json.loads((tmp_path / "r.json").read_text()) == printed


# --- token statistics with a real (tiny) tokenizer ---------------------------------------------

def make_tokenizer(folder: Path, words: list[str], chat_template: str | None = None) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(dict.fromkeys(words))}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # one token per space-separated word
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]")
    if chat_template:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_token_stats_are_measured_with_the_tokenizer(tmp_path: Path) -> None:
    rows = [{"text": " ".join(["w"] * n)} for n in range(1, 101)]
    random.Random(3).shuffle(rows)
    write_jsonl(tmp_path / "text.jsonl", rows)
    plain = make_tokenizer(tmp_path / "plain", ["w"])
    report = validate_dataset(config_for(tmp_path, "text.jsonl", validation={
        "tokenizer": str(plain), "maxSeqLength": 16}), token=None)
    assert report.token_stats is not None
    assert report.token_stats.model_dump() == {"min": 1, "median": 50, "p95": 95, "max": 100,
                                               "over_max_percent": 84.0}

    # Chat rows go through the tokenizer's chat template: one token per role marker, one per word.
    template = "{% for m in messages %}<|{{ m.role }}|> {{ m.content }} {% endfor %}"
    chat = make_tokenizer(tmp_path / "chat", ["w", "q"], chat_template=template)
    write_jsonl(tmp_path / "chat.jsonl", [chat_row(("user", "q q"), ("assistant", " ".join(["w"] * n)))
                                          for n in (1, 2, 30)])
    report = validate_dataset(config_for(tmp_path, "chat.jsonl", validation={
        "tokenizer": str(chat), "maxSeqLength": 16}), token=None)
    assert report.token_stats is not None
    assert (report.token_stats.min, report.token_stats.median, report.token_stats.max) == (5, 6, 34)
    assert report.token_stats.over_max_percent == pytest.approx(33.33)

    # Preference rows: the prompt and the longer answer, through the same template.
    write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "q q", "chosen": "w", "rejected": " ".join(["w"] * 30)}])
    report = validate_dataset(config_for(tmp_path, "pairs.jsonl", validation={
        "tokenizer": str(chat), "maxSeqLength": 16}), token=None)
    assert report.token_stats is not None and report.token_stats.max == 34

    report = validate_dataset(config_for(tmp_path, "chat.jsonl", validation={
        "tokenizer": str(tmp_path / "no-such-tokenizer")}), token=None)
    assert report.outcome == "Ready" and report.token_stats is None
    assert report.message is not None and "token statistics skipped" in report.message


# --- bounded memory ----------------------------------------------------------------------------

# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (this pytest
# process, which may hold a loaded model), which would hide the child's own peak.
_PEAK_RSS = textwrap.dedent("""
    import sys
    from kubetune_trainer.validatecli import main
    code = main(["--config", sys.argv[1]])
    peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print("PEAK_KIB", peak)
    sys.exit(code)
""")


def peak_rss_kib(config: ValidatorConfig, tmp_path: Path, tag: str) -> tuple[int, dict[str, Any]]:
    config_file = tmp_path / f"{tag}.json"
    config_file.write_text(json.dumps(config.to_wire()))
    done = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(config_file)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "KUBETUNE_DATA_TOKEN": ""})
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    return int(lines[-1].split()[1]), json.loads(lines[-2])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from Linux /proc")
def test_200k_rows_validate_in_bounded_memory(tmp_path: Path) -> None:
    rng = random.Random(7)
    with (tmp_path / "big.jsonl").open("w") as file:
        for i in range(200_000):
            file.write(json.dumps({"instruction": f"Question {i}: " + "word " * rng.randint(5, 30), "input": "",
                                   "output": "answer " * rng.randint(5, 40)}) + "\n")
    write_jsonl(tmp_path / "small.jsonl", [{"instruction": "Q", "input": "", "output": "A"}] * 10)
    size = (tmp_path / "big.jsonl").stat().st_size
    baseline_kib, _ = peak_rss_kib(config_for(tmp_path, "small.jsonl"), tmp_path, "small")
    peak_kib, report = peak_rss_kib(config_for(tmp_path, "big.jsonl"), tmp_path, "big")
    assert report["outcome"] == "Ready" and report["rows"] == 200_000 and report["sizeBytes"] == size
    assert baseline_kib > 20_000  # the interpreter and its imports: a real measurement, not zero
    growth = (peak_kib - baseline_kib) * 1024
    # Held as Python dicts the rows would take several times the file's ~60 MB; streaming needs
    # a few buffers. A tenth of the file on disk is a generous bound that a full load cannot meet.
    assert growth < size / 10, f"peak grew by {growth / 2**20:.1f} MiB for a {size / 2**20:.1f} MiB file"


def test_yaml_config_and_a_hub_dataset_pinned_to_its_commit(hub_server: HubServer, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    api.create_repo("team/yandex-rows", repo_type="dataset", private=True)
    rows = [{"request": [{"role": "user", "text": f"Q{i}"}], "response": f"A{i}"} for i in range(4)]
    api.upload_file(path_or_fileobj=write_jsonl(tmp_path / "train.jsonl", rows).read_bytes(),
                    path_in_repo="train.jsonl", repo_id="team/yandex-rows", repo_type="dataset")
    (tmp_path / "config.yaml").write_text(textwrap.dedent(f"""
        contractVersion: "1.0"
        name: yandex-rows
        namespace: ml
        source:
          hf: {{repo: team/yandex-rows, endpoint: "{hub_server.endpoint}"}}
        resultPath: {tmp_path / "result.json"}
    """))
    monkeypatch.setenv("KUBETUNE_DATA_TOKEN", hub_server.token)
    code = main(["--config", str(tmp_path / "config.yaml")])
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    assert code == ExitCode.OK and out.startswith("Dataset ml/yandex-rows: Ready")
    assert report["revision"] == hub_server.commits("team/yandex-rows", repo_type="dataset")[0].sha
    assert (report["detectedFormat"], report["rows"]) == ("yandex", 4)
    assert report["preview"][0] == "user: Q0 | assistant: A0"
    assert hub_server.token not in out


def test_the_validator_and_the_trainer_detect_the_same_format(tmp_path: Path) -> None:
    # Both read the rows through one ExampleStream: the same rows decide the format. (The validator
    # used to look at 50 rows and the trainer at 100: here they would have disagreed.)
    from kubetune.api.contract import Mounts
    from kubetune.api.tuningjob import DatasetEntry
    from kubetune_trainer.data.datamix import load_entry

    both = [{"prompt": f"Q{i}", "completion": f"A{i}", "text": f"Q{i} A{i}"} for i in range(30)]
    text_only = [{"text": f"plain {i}"} for i in range(70)]
    write_jsonl(tmp_path / "d.jsonl", both + text_only)
    report = validate_dataset(config_for(tmp_path, "d.jsonl"), token=None)
    entry = DatasetEntry.model_validate({"source": {"pvc": {"claimName": "data", "path": "d.jsonl"}}})
    loaded = load_entry(entry, "d", mounts=Mounts(pvcs={"data": str(tmp_path)}), token=None)
    assert report.detected_format is loaded.fmt is DatasetFormat.TEXT
    assert (report.outcome, report.valid_rows, len(loaded.examples)) == ("Ready", 100, 100)
