"""`kubetune-trainer validate` as a person uses it: -f files, folders and stdin, documented configs, errors
that name the field and the fix, and preference rows checked with row numbers."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.api.contract import ExitCode, ValidatorConfig
from kubetune_trainer.validatecli import main
from support.hubserver import HubServer, hub_server_fixture  # noqa: F401
from support.toydata import PREFERENCE_FORMATS, preference_rows, write_jsonl

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
GOOD = {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out


def stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_a_file_is_validated_with_row_numbers_and_no_json_unless_asked(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    write_jsonl(tmp_path / "chat.jsonl", [GOOD, {"messages": [{"role": "user", "content": "only a question"}]}])
    code, out = run(capsys, "-f", str(tmp_path / "chat.jsonl"))
    assert code == ExitCode.PERMANENT
    assert out.startswith("Dataset chat.jsonl: Invalid (DatasetInvalid)")
    assert "row 2 messages: has no assistant turn: add the assistant's answer" in out
    assert not out.strip().splitlines()[-1].startswith("{")
    code, out = run(capsys, "-f", str(tmp_path / "chat.jsonl"), "-o", "json")
    assert json.loads(out.strip().splitlines()[-1])["errorCount"] == 1


def test_a_folder_is_one_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_jsonl(tmp_path / "data" / "a.jsonl", [GOOD] * 2)
    write_jsonl(tmp_path / "data" / "sub" / "b.jsonl", [GOOD] * 3)
    code, out = run(capsys, "-f", str(tmp_path / "data"), "--format", "messages", "-o", "json")
    report = json.loads(out.strip().splitlines()[-1])
    assert code == ExitCode.OK and report["rows"] == 5 and report["detectedFormat"] == "messages"


def test_standard_input_and_a_cut_off_line_at_its_real_column(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    stdin(monkeypatch, b'{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": "b"\n')
    code, out = run(capsys, "-f", "-")
    assert code == ExitCode.PERMANENT and out.startswith("Dataset stdin: Invalid")
    # json would say "line 2 column 1" (the newline); the line itself ends at column 35.
    assert "row 2: stdin line 2: not valid JSON: the line ends inside a value at column 35, as if it was cut off" \
        in out


@pytest.mark.parametrize("fmt", PREFERENCE_FORMATS)
def test_preference_rows_are_detected_and_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  fmt: str) -> None:
    rows: list[Any] = preference_rows(fmt, 4)
    broken = json.loads(json.dumps(rows[1]))
    if fmt == "standard":
        broken["rejected"] = broken["chosen"]
        field, words = "rejected", "the same as the chosen one"
    elif fmt == "conversational":
        broken["rejected"][0]["content"] = "another question"
        field, words = "rejected[0]", "must share every turn but the last"
    else:
        broken["preferred_output"][0]["role"] = "user"
        field, words = "preferred_output[0]", "must be an assistant turn"
    write_jsonl(tmp_path / "pairs.jsonl", [rows[0], broken, rows[2]])
    code, out = run(capsys, "-f", str(tmp_path / "pairs.jsonl"), "-o", "json")
    report = json.loads(out.strip().splitlines()[-1])
    assert code == ExitCode.PERMANENT and report["detectedFormat"] == "preference"
    assert [(e["row"], e["field"]) for e in report["errors"]] == [(2, field)]
    assert words in report["errors"][0]["message"]
    assert report["preview"][0].startswith("user: ") and " | chosen: " in report["preview"][0]


def test_config_errors_name_the_field_and_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text("name: x\nsource: {pvc: {claimName: d}}\nformt: messages\n")
    code, out = run(capsys, "--config", str(tmp_path / "bad.yaml"), "--result-path", str(tmp_path / "r.json"))
    assert code == ExitCode.PERMANENT and "InvalidConfig" in out
    assert "source.pvc.path: required field is missing: add it" in out
    assert "formt: unknown field (did you mean 'format'?)" in out
    assert "errors.pydantic.dev" not in out and "validation error for" not in out

    (tmp_path / "broken.yaml").write_text("name: x\nsource: {pvc: {claimName: d}\n")
    code, out = run(capsys, "--config", str(tmp_path / "broken.yaml"))
    assert code == ExitCode.PERMANENT and "is not valid YAML at line 3, column 1" in out

    code, out = run(capsys, "-f", str(tmp_path / "missing.jsonl"))
    assert code == ExitCode.PERMANENT and "-f " in out and "no such file or folder" in out
    code, out = run(capsys, "-f", str(tmp_path / "bad.yaml"), "--column", "instruction")
    assert "--column 'instruction': write FIELD=COLUMN" in out
    code, out = run(capsys, "-f", str(tmp_path / "bad.yaml"), "--max-errors", "0")
    assert "--max-errors (validation.maxErrors)" in out


def test_help_documents_the_validator_config(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    for words in ("-f PATH", "kind: ValidatorConfig", "mounts:", "resultPath:", "examples/validator-config.yaml",
                  "preference"):
        assert words in out


def test_the_example_config_is_a_valid_validator_config(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    ValidatorConfig.model_validate(yaml.safe_load((EXAMPLES / "validator-config.yaml").read_text()))
    monkeypatch.chdir(EXAMPLES.parent)
    code, out = run(capsys, "--config", str(EXAMPLES / "validator-config.yaml"),
                    "--result-path", str(tmp_path / "report.json"))
    assert code == ExitCode.OK and "Dataset default/quickstart-qa: Ready" in out


def test_a_dataset_manifest_is_a_config_too(hub_server: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import HfApi

    HfApi(endpoint=hub_server.endpoint, token=hub_server.token).create_repo("team/pairs", repo_type="dataset")
    HfApi(endpoint=hub_server.endpoint, token=hub_server.token).upload_file(
        path_or_fileobj=write_jsonl(tmp_path / "p.jsonl", preference_rows("openai", 3)).read_bytes(),
        path_in_repo="train.jsonl", repo_id="team/pairs", repo_type="dataset")
    (tmp_path / "dataset.yaml").write_text(textwrap.dedent(f"""
        apiVersion: kubetune.io/v1alpha1
        kind: Dataset
        metadata: {{name: pairs, namespace: ml}}
        spec:
          source: {{hf: {{repo: team/pairs, endpoint: "{hub_server.endpoint}"}}}}
          format: preference
    """))
    monkeypatch.setenv("KUBETUNE_DATA_TOKEN", hub_server.token)
    code, out = run(capsys, "--config", str(tmp_path / "dataset.yaml"), "--result-path", str(tmp_path / "r.json"))
    assert code == ExitCode.OK and out.startswith("Dataset ml/pairs: Ready")
    assert json.loads(out.strip().splitlines()[-1])["rows"] == 3
