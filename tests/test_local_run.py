"""`kubetune run`: the process runner, the progress display, describe, and the quickstart end to end.

The runner's own tests use a tiny stand-in trainer script (signals and streaming are what they
check); the end-to-end test runs the real `kubetune-trainer` on the real quickstart manifest.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kubetune.api import (
    Condition,
    ConditionStatus,
    ModelResult,
    SampleGeneration,
    TrainingMetrics,
    TrainingProgress,
    TuningJob,
    TuningJobPhase,
    TuningJobStatus,
)
from kubetune.api.progress import ProgressEvent
from kubetune.local.describe import TimedEvent, describe_tuning_job, title_case
from kubetune.local.display import ProgressDisplay, format_duration, render_bar, render_line
from kubetune.local.runner import LocalProcess, read_termination_message
from kubetune.status.events import EventRecord

REPO = Path(__file__).resolve().parents[1]

# A stand-in for kubetune-trainer: prints progress events, writes a result, checkpoints on SIGINT.
FAKE_TRAINER = textwrap.dedent("""\
    import json, signal, sys, time
    from kubetune.api.progress import ProgressEvent, format_event
    result_path, steps, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    def write(result):
        with open(result_path, "w") as f:
            json.dump(result, f)
    def on_interrupt(signum, frame):
        print("saving checkpoint", flush=True)
        write({"status": "Failed", "reason": "Interrupted", "message": "checkpoint saved", "retryable": True})
        sys.exit(130)
    signal.signal(signal.SIGINT, on_interrupt)
    print("loading model", flush=True)
    for step in range(1, steps + 1):
        time.sleep(delay)
        print(format_event(ProgressEvent(step=step, total_steps=steps, loss=2.0 / step)), flush=True)
    write({"status": "Succeeded", "metrics": {"evalLoss": 0.5, "baseEvalLoss": 2.0}})
""")


@pytest.fixture
def fake_trainer(tmp_path: Path) -> Path:
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    return script


def test_runner_streams_lines_to_log_and_callback_and_reads_the_result(tmp_path: Path, fake_trainer: Path) -> None:
    seen: list[str] = []
    result = tmp_path / "run" / "result.json"
    result.parent.mkdir()
    result.write_text('{"status": "Failed"}')  # left by an earlier run: must not be read as this one's
    proc = LocalProcess([sys.executable, str(fake_trainer), str(result), "3", "0"], env=dict(os.environ),
                        log_path=tmp_path / "run" / "trainer.log", result_path=result, on_line=seen.append)
    outcome = proc.run()
    assert outcome.exit_code == 0 and not outcome.interrupted
    assert json.loads(outcome.termination_message or "")["status"] == "Succeeded"
    assert seen[0] == "loading model" and len(seen) == 4
    assert (tmp_path / "run" / "trainer.log").read_text().splitlines() == seen


def test_runner_forwards_an_interrupt_once_and_reports_it(tmp_path: Path, fake_trainer: Path) -> None:
    result = tmp_path / "result.json"
    started = threading.Event()

    def on_line(line: str) -> None:
        if line.startswith("##kubetune"):
            started.set()

    proc = LocalProcess([sys.executable, str(fake_trainer), str(result), "1000", "0.05"], env=dict(os.environ),
                        log_path=tmp_path / "trainer.log", result_path=result, on_line=on_line)
    # The runner runs in a worker thread here, so the test delivers the "Ctrl-C" itself.
    box: dict[str, object] = {}
    worker = threading.Thread(target=lambda: box.setdefault("outcome", proc.run()))
    worker.start()
    assert started.wait(30)
    proc.interrupt()
    worker.join(30)
    outcome = box["outcome"]
    assert outcome.exit_code == 130 and outcome.interrupted  # type: ignore[attr-defined]
    assert json.loads(outcome.termination_message)["reason"] == "Interrupted"  # type: ignore[attr-defined]
    assert "saving checkpoint" in (tmp_path / "trainer.log").read_text()


def test_runner_reports_death_by_signal_as_128_plus_n(tmp_path: Path) -> None:
    script = tmp_path / "die.py"
    script.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    proc = LocalProcess([sys.executable, str(script)], env=dict(os.environ), log_path=tmp_path / "log",
                        result_path=tmp_path / "result.json")
    outcome = proc.run()
    assert outcome.exit_code == 128 + signal.SIGKILL and outcome.signal == signal.SIGKILL
    assert outcome.termination_message is None


def test_termination_message_is_capped_like_the_kubelet_does(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text("x" * 5000)
    assert len(read_termination_message(path) or "") == 4096
    assert read_termination_message(tmp_path / "absent") is None


def test_display_plain_lines_and_terminal_bar() -> None:
    event = ProgressEvent(step=120, total_steps=300, loss=1.234, tokens_per_second=3456.7, eta_seconds=65)
    assert render_line(event) == "step 120/300 (40%)  loss 1.2340  3,457 tok/s  ETA 1:05"
    assert render_bar(event, width=10).startswith(" 40% [####......] 120/300  loss 1.2340")
    assert format_duration(3725) == "1:02:05" and format_duration(None) == "?"

    plain = io.StringIO()
    display = ProgressDisplay(plain, interactive=False)
    display.progress(event)
    display.message("stage: saving")
    assert plain.getvalue() == "step 120/300 (40%)  loss 1.2340  3,457 tok/s  ETA 1:05\nstage: saving\n"

    tty = io.StringIO()
    display = ProgressDisplay(tty, interactive=True)
    display.progress(event)
    display.progress(event.model_copy(update={"step": 150}))
    display.message("done")
    out = tty.getvalue()
    assert out.count("\r\x1b[2K") == 3 and "150/300" in out and out.endswith("done\n")


def _job() -> TuningJob:
    return TuningJob.model_validate({
        "apiVersion": "kubetune.io/v1alpha1", "kind": "TuningJob", "metadata": {"name": "demo"},
        "spec": {"baseModel": {"scratch": {}}, "datasets": {"train": [{"dataset": "qa"}]},
                 "output": {"pvc": {"claimName": "models", "path": "demo"}}},
    })


def test_describe_reads_like_kubectl_describe() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    job = _job()
    job.status = TuningJobStatus(
        phase=TuningJobPhase.SUCCEEDED,
        conditions=[Condition(type="Succeeded", status=ConditionStatus.TRUE, reason="Completed",
                              message="training finished", last_transition_time=now)],
        progress=TrainingProgress(step=300, total_steps=300, percent=100, eta_seconds=0, loss=0.4),
        metrics=TrainingMetrics(eval_loss=0.5, base_eval_loss=2.0),
        result=ModelResult(path="/tmp/models/demo/model"),
        samples=[SampleGeneration(prompt="Capital of Peru?", reference="Lima.", base="banana", tuned="Lima.")],
    )
    events = [TimedEvent(EventRecord("Normal", "Started", "trainer started"), now - timedelta(seconds=42)),
              TimedEvent(EventRecord("Normal", "Succeeded", "training finished"), now)]
    text = describe_tuning_job(job, events, now=now)
    lines = text.splitlines()
    assert lines[0] == "Name:         demo" and "Kind:         TuningJob" in lines
    assert "  Base Model:" in lines and "    Scratch:" in lines
    assert "  Phase:  Succeeded" in lines
    assert "    Type       Status  Reason     Message" in lines
    assert "    Succeeded  True    Completed  training finished" in lines
    assert "    Eval Loss:       0.5" in lines and "    Base Eval Loss:  2" in lines
    assert "    Eval Loss Change:  2.0000 -> 0.5000 (-75.0%)" in lines
    # Sample generations right after the figures: base and tuned answers to the same prompt.
    at = lines.index("  Samples:")
    assert lines[at + 1:at + 5] == ["    Prompt:     Capital of Peru?", "    Reference:  Lima.",
                                    "    Base:       banana", "    Tuned:      Lima."]
    assert at < lines.index("  Result:")
    assert "    Path:  /tmp/models/demo/model" in lines
    assert lines[-4:] == ["  Type    Reason     Age  From            Message",
                          "  ----    ------     ---  ----            -------",
                          "  Normal  Started    42s  kubetune-local  trainer started",
                          "  Normal  Succeeded  0s   kubetune-local  training finished"]
    assert title_case("baseEvalLoss") == "Base Eval Loss"


def test_describe_shows_how_preference_tuning_moved_the_model() -> None:
    job = _job()
    job.status = TuningJobStatus(phase=TuningJobPhase.SUCCEEDED, metrics=TrainingMetrics(
        eval_loss=0.61, base_eval_loss=0.6931, preference_accuracy=0.75, base_preference_accuracy=0.5,
        reward_margin=0.31, reward_accuracy=0.8))
    lines = describe_tuning_job(job).splitlines()
    assert "    Preference Accuracy Change:  50.0% -> 75.0%" in lines
    assert any(line.split() == ["Reward", "Margin:", "0.31"] for line in lines)


# ---- the real pipeline: `kubetune run` with the real validator and trainer --------------------------------------

QUICKSTART = REPO / "examples" / "quickstart.yaml"
DATA = REPO / "examples" / "data"

GENERATE = textwrap.dedent("""\
    import sys
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": sys.argv[2]}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, max_new_tokens=24, do_sample=False)
    print(tokenizer.decode(out[0][prompt["input_ids"].shape[1]:], skip_special_tokens=True))
""")


def kubetune(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubetune", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def describe_value(output: str, label: str) -> str:
    """The value of `label:` in the printed describe (the first occurrence under Status)."""
    status = output[output.index("\nStatus:\n"):]
    line = next(line for line in status.splitlines() if line.strip().startswith(label + ":"))
    return line.split(":", 1)[1].strip()


def test_bad_manifests_fail_fast_naming_document_and_field(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from kubetune.cli import main

    bad = tmp_path / "bad.yaml"
    text, replaced = re.subn(r"learningRate: \S+", "learningRate: quick", QUICKSTART.read_text())
    assert replaced == 1
    bad.write_text(text)
    workdir = tmp_path / "out"
    assert main(["run", "-f", str(bad), "--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err
    assert f"{bad} document 2 (TuningJob/quickstart): spec.hyperparameters.learningRate: expected a number" in err
    assert not workdir.exists()  # nothing ran, nothing was written


def test_a_data_claim_without_a_folder_is_named_with_the_fix(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from kubetune.cli import main

    assert main(["run", "-f", str(QUICKSTART), "--workdir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "document 1 (Dataset/quickstart-qa): spec.source.pvc.claimName: volume claim 'quickstart-data'" in err
    assert "pass --volume quickstart-data=FOLDER" in err


def test_dry_run_validates_the_data_and_prints_the_trainer_config(tmp_path: Path) -> None:
    run = kubetune("run", "-f", str(QUICKSTART), "--volume", f"quickstart-data={DATA}", "--workdir", "out",
                   "--dry-run", cwd=tmp_path)
    assert run.returncode == 0, run.stderr + run.stdout
    assert "Dataset default/quickstart-qa: Ready (267 of 267 rows valid, format messages)" in run.stdout
    assert "kind: TrainerConfig" in run.stdout
    assert f"quickstart-data: {DATA}" in run.stdout  # the claim is the local folder
    assert f"workDir: {tmp_path / 'out' / 'volumes' / 'quickstart-models' / 'quickstart'}" in run.stdout
    assert not (tmp_path / "out" / "volumes" / "quickstart-models" / "quickstart").exists()  # nothing trained


def test_a_dataset_with_bad_rows_stops_the_run_before_training(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    rows = [json.loads(line) for line in (DATA / "quickstart.jsonl").read_text().splitlines()[:20]]
    rows[3] = {"messages": [{"role": "user", "content": "no answer here"}]}
    (data / "quickstart.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    run = kubetune("run", "-f", str(QUICKSTART), "--volume", f"quickstart-data={data}", "--workdir", "out",
                   cwd=tmp_path)
    assert run.returncode == 1, run.stderr + run.stdout
    assert "Kind:         Dataset" in run.stdout and "Phase:  Invalid" in run.stdout
    assert "Phase:  Failed" in run.stdout and "DatasetInvalid" in run.stdout
    assert not (tmp_path / "out" / "default" / "quickstart" / "trainer.log").exists()


def test_a_failed_preflight_runs_no_trainer(tmp_path: Path) -> None:
    manifest = tmp_path / "missing-data.yaml"
    manifest.write_text(textwrap.dedent("""\
        apiVersion: kubetune.io/v1alpha1
        kind: TuningJob
        metadata: {name: missing-data}
        spec:
          baseModel: {scratch: {}}
          datasets:
            train: [{source: {pvc: {claimName: quickstart-data, path: no-such-file.jsonl}}, format: messages}]
          output: {pvc: {claimName: models, path: out}}
          resources: {gpus: 0}
        """))
    run = kubetune("run", "-f", str(manifest), "--volume", f"quickstart-data={REPO / 'examples' / 'data'}",
                   "--workdir", "out", cwd=tmp_path)
    assert run.returncode == 1, run.stderr + run.stdout
    assert describe_value(run.stdout, "Phase") == "Failed"
    assert re.search(r"^    PreflightPassed +False +DataUnreachable +preflight: datasets.train\[0\] "
                     r"\(pvc:quickstart-data/no-such-file.jsonl\)", run.stdout, re.M), run.stdout
    assert "Warning  Failed" in run.stdout and "Normal  JobCreated" not in run.stdout
    assert re.search(r"^    JobCreated +False", run.stdout, re.M)
    job_dir = tmp_path / "out" / "default" / "missing-data"
    assert (job_dir / "preflight.log").is_file() and not (job_dir / "trainer.log").exists()

    dry = kubetune("run", "--dry-run", "-f", str(manifest), "--volume",
                   f"quickstart-data={REPO / 'examples' / 'data'}", "--workdir", "out", cwd=tmp_path)
    assert dry.returncode == 2, dry.stderr + dry.stdout
    assert "error: the preflight refuses TuningJob missing-data (DataUnreachable)" in dry.stderr


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path: Path) -> None:
    run = kubetune("run", "-f", str(QUICKSTART), "--volume", f"quickstart-data={DATA}", "--workdir", "out",
                   cwd=tmp_path)
    assert run.returncode == 0, run.stderr + run.stdout[-3000:]
    out = run.stdout
    # Live progress (plain lines: stdout is a pipe), then the final status as kubectl describe prints it.
    assert "step 5/180 (2%)  loss " in out
    assert describe_value(out, "Phase") == "Succeeded"
    assert re.search(r"^    Succeeded +True +Succeeded", out, re.M)
    assert re.search(r"^    ModelPublished +True +Saved", out, re.M)
    # The preflight ran before training (a scratch model and volumes: data and memory to check).
    assert re.search(r"^    PreflightPassed +True +Passed +checked data, memory", out, re.M)
    assert "Normal  PreflightPassed" in out
    assert float(describe_value(out, "Wall Seconds")) > 0 and int(describe_value(out, "Trained Tokens")) > 0
    assert describe_value(out, "Revision").startswith("sha256:"), "the dataset's content hash is pinned"
    final = tmp_path / "out" / "volumes" / "quickstart-models" / "quickstart" / "final"
    assert describe_value(out, "Path") == str(final)
    eval_loss, base_loss = float(describe_value(out, "Eval Loss")), float(describe_value(out, "Base Eval Loss"))
    assert eval_loss <= base_loss / 2, (eval_loss, base_loss)
    assert "Normal  Succeeded" in out
    # "Did tuning help?" as text: validation prompts with the base and the tuned answers.
    assert "  Samples:" in out and out.count("    Tuned:") == 3 and out.count("    Base:") == 3
    # The full answers stay in the run's own folder (runs/<uid>-<runHash>/) on the work volume.
    (run_folder,) = (final.parent / "runs").iterdir()
    samples = json.loads((run_folder / "samples.json").read_text())
    assert len(samples) == 3 and all(s["tuned"] and s["prompt"] for s in samples)

    # The run folder: config, log, result; the model folder: the model, tokenizer, card, checkpoints.
    job_dir = tmp_path / "out" / "default" / "quickstart"
    result = json.loads((job_dir / "result.json").read_text())
    assert result["status"] == "Succeeded"
    assert result["metrics"]["evalLoss"] == pytest.approx(eval_loss, rel=1e-4)
    assert "##kubetune " in (job_dir / "trainer.log").read_text()
    assert f"full trainer log: {job_dir / 'trainer.log'}" in out
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md"):
        assert (final / name).is_file(), name
    # The run trained in its own folder beside the output; its checkpoints went once final/ was written.
    runs = list((final.parent / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("local-default.quickstart-")
    assert (runs[0] / "final" / "model.safetensors").samefile(final / "model.safetensors")
    assert not (runs[0] / "checkpoints").exists()
    assert f"run folder: {runs[0]}" in out
    assert describe_value(out, "Work Dir") == str(runs[0])

    # The model loads with plain transformers and answers in the learned template.
    script = tmp_path / "generate.py"
    script.write_text(GENERATE)
    gen = subprocess.run([sys.executable, str(script), str(final), "What is the capital of France?"],
                         capture_output=True, text=True, timeout=300)
    assert gen.returncode == 0, gen.stderr
    assert gen.stdout.strip().startswith("The capital of"), gen.stdout


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_the_same_command_resumes(tmp_path: Path) -> None:
    manifest = tmp_path / "short.yaml"
    manifest.write_text(QUICKSTART.read_text().replace("epochs: 12", "epochs: 3"))
    command = [sys.executable, "-m", "kubetune", "run", "-f", str(manifest), "--volume", f"quickstart-data={DATA}",
               "--workdir", "out"]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    seen: list[str] = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("step "):
            proc.send_signal(signal.SIGINT)  # what Ctrl-C does to the foreground process
            break
    seen.extend(proc.stdout)
    assert proc.wait(timeout=300) == 130, "".join(seen)
    first = "".join(seen)
    assert describe_value(first, "Phase") == "Failed" and "Interrupted" in first
    assert "run the same command again to resume" in first
    work = tmp_path / "out" / "volumes" / "quickstart-models" / "quickstart"
    [folder] = (work / "runs").iterdir()
    assert any((folder / "checkpoints").glob("checkpoint-*")) and not (work / "final").exists()
    assert "add --restart to start over" in first

    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "resuming from checkpoint-" in again.stdout
    assert describe_value(again.stdout, "Phase") == "Succeeded"
    # The status and the Events say which checkpoint the second run resumed from.
    resumed_from = int(describe_value(again.stdout, "Resumed From Step"))
    assert resumed_from > 0 and describe_value(again.stdout, "Attempt") == "2"
    assert f"Resumed from checkpoint step {resumed_from} (attempt 2)" in again.stdout
    log = (tmp_path / "out" / "default" / "quickstart" / "trainer.log").read_text()
    assert "==== new run at" in log  # one log file tells both runs


@pytest.mark.slow
def test_the_same_manifest_reuses_its_run_an_edited_one_starts_clean_and_restart_starts_over(tmp_path: Path) -> None:
    short = QUICKSTART.read_text().replace("epochs: 12", "epochs: 12\n    maxSteps: 10")
    manifest = tmp_path / "short.yaml"
    manifest.write_text(short)
    args = ("run", "-f", str(manifest), "--volume", f"quickstart-data={DATA}", "--workdir", "out", "--plain")
    first = kubetune(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:]
    assert "step 10/10" in first.stdout
    runs = tmp_path / "out" / "volumes" / "quickstart-models" / "quickstart" / "runs"
    [first_run] = runs.iterdir()
    model = first_run / "final" / "model.safetensors"
    trained = model.read_bytes()

    again = kubetune(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:]
    assert f"this run finished before ({first_run}): publishing its model without training" in again.stdout
    assert not re.search(r"^step \d+/", again.stdout, re.M), "no training step"
    assert describe_value(again.stdout, "Phase") == "Succeeded"
    assert model.read_bytes() == trained

    manifest.write_text(short.replace("learningRate: 0.002", "learningRate: 0.001"))
    edited = kubetune(*args, cwd=tmp_path)
    assert edited.returncode == 0, edited.stdout[-3000:]
    assert "step 5/10" in edited.stdout, "trained from step 0, not from the other spec's model"
    [second_run] = [p for p in runs.iterdir() if p != first_run]
    events = edited.stdout[edited.stdout.index("\nEvents:\n"):]
    assert "SpecChanged" in events and f"since run {first_run.name}" in events
    assert model.read_bytes() == trained, "the earlier run is kept"

    restarted = kubetune(*args, "--restart", cwd=tmp_path)
    assert restarted.returncode == 0, restarted.stdout[-3000:]
    assert f"--restart: removed the run folder {second_run}" in restarted.stdout
    assert "step 5/10" in restarted.stdout and "finished before" not in restarted.stdout
