"""The cluster's pipeline on this machine, with processes for Pods: each TuningJob of the manifests in turn.

Manifests are validated with the API models, Datasets by `kubetune-trainer validate`, and the
TuningJob runs as `kubetune-trainer train` with the TrainerConfig and environment the builders
render for the Job. The phase, conditions and events come from the operator's own status
derivation (kept by StatusTracker, tracker.py), and the end result is printed as `kubectl
describe` would print it.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import yaml

from kubetune.api import Dataset, ExitCode, LaunchPlan, TrainerConfig, TuningJob, TuningJobPhase
from kubetune.api.distributed import effective_batch_size, world_size
from kubetune.api.progress import ProgressEvent, StageEvent, parse_line, summarize
from kubetune.api.run import FINAL_DIR, FINISHED_MARKER
from kubetune.builders import ResolveError, build_training_job, config_json, plan_work_volume, resolve_trainer_config
from kubetune.builders.preflight import build_preflight_job, pin_revisions, with_gpu_memory
from kubetune.builders.resolve import writable_claims
from kubetune.local.datasets import DatasetValidator
from kubetune.local.describe import describe_tuning_job
from kubetune.local.display import ProgressDisplay
from kubetune.local.manifests import Loaded, Manifests
from kubetune.local.runner import LocalProcess, RunInterrupted, trainer_command
from kubetune.local.session import finished_observation, running_observation
from kubetune.local.tracker import StatusTracker, utc_now
from kubetune.local.workspace import (
    Workspace,
    container_of,
    earlier_runs,
    localize_trainer_config,
    missing_input_volumes,
    process_args,
    process_env,
    run_folder,
)
from kubetune.settings import Settings
from kubetune.status import DatasetsObservation, RunObservation, observe_datasets, referenced_datasets
from kubetune.status.events import EventRecord
from kubetune.status.guardrails import (
    PreflightObservation,
    PreflightStage,
    PreflightVerdict,
    pinned_datasets,
    preflight_verdict,
)
from kubetune.status.observe import PodTimes, parse_termination_message

# Lines of trainer output kept for status (the log file has them all).
_LOG_WINDOW = 2000
LOCAL_UID = "local"


def _owner(job: TuningJob) -> dict[str, str]:
    """Stands in for the ownerReference the operator would set; nothing reads it locally."""
    return {"apiVersion": job.api_version, "kind": job.kind, "name": job.metadata.name, "uid": LOCAL_UID}


class LocalRun:
    """Runs every TuningJob of the files in turn (and validates every Dataset once)."""

    def __init__(self, manifests: Manifests, workspace: Workspace, display: ProgressDisplay, *,
                 dry_run: bool = False, restart: bool = False, settings: Settings | None = None,
                 out: TextIO | None = None, processes: int = 1) -> None:
        self.manifests = manifests
        self.workspace = workspace
        self.display = display
        self.dry_run = dry_run
        self.processes = processes
        self.restart = restart
        self.settings = settings or Settings.from_env()
        self.out = out or sys.stdout
        self.validator = DatasetValidator(manifests, workspace, display, self.settings)

    def run_all(self) -> int:
        codes: list[int] = []
        if not self.manifests.tuning_jobs:
            # Datasets alone: validate them, as the operator would on apply.
            ready = [self.validator.validate(key).status for key in sorted(self.manifests.datasets)]
            return ExitCode.OK if all(self.validator.is_ready(s) for s in ready) else ExitCode.RETRYABLE
        for loaded in self.manifests.tuning_jobs:
            code = self.run_job(loaded)
            codes.append(code)
            if code == ExitCode.INTERRUPTED:
                break  # Ctrl-C stops the whole command, not just this job
        if ExitCode.INTERRUPTED in codes:
            return ExitCode.INTERRUPTED
        return next((c for c in codes if c != ExitCode.OK), ExitCode.OK)

    def run_job(self, loaded: Loaded[TuningJob]) -> int:
        job = loaded.obj
        namespace, name = job.metadata.namespace, job.metadata.name
        hp = job.spec.hyperparameters
        # Locally the world is --processes on this machine, whatever the manifest asks of a cluster.
        tracker = StatusTracker(job, self.settings.log_tail_lines, world_size=self.processes,
                                effective_batch_size=effective_batch_size(
                                    hp.per_device_batch_size, self.processes, hp.gradient_accumulation_steps))
        self.display.message(f"TuningJob {namespace}/{name} ({loaded.ref.file})")

        names = referenced_datasets(job.spec)
        datasets: dict[str, Dataset] = {n: self.validator.validate((namespace, n)) for n in names}
        observed = observe_datasets(names, datasets)
        tracker.observe(RunObservation(datasets=observed))
        if not observed.ready:
            return self._finish(tracker)

        try:
            config = resolve_trainer_config(job, datasets, self.settings)
        except ResolveError as exc:
            tracker.observe(RunObservation(datasets=observed, spec_error=exc.message))
            return self._finish(tracker)
        config = localize_trainer_config(config, self.workspace, self.manifests,
                                         plan_work_volume(job, self.settings))
        config = self._local_launch(job, config)
        writable = writable_claims(job, self.settings)
        missing = missing_input_volumes(config.mounts, writable)
        if missing:
            hints = "; ".join(f"claim {claim} maps to {path}, which does not exist: pass --volume {claim}=FOLDER"
                              for claim, path in missing)
            tracker.observe(RunObservation(datasets=observed, spec_error=hints))
            return self._finish(tracker)

        job_dir = self.workspace.job_dir(namespace, name)
        job_dir.mkdir(parents=True, exist_ok=True)
        config_path = job_dir / "config.json"
        pins = tuple(pinned_datasets(job.spec, datasets, None))
        if job.spec.guardrails.preflight:
            preflight = self._preflight(job, config, job_dir, tracker, observed)
            if preflight is None:
                if self.dry_run:
                    self.display.close()
                    error = tracker.status.error if tracker.status is not None else None
                    print(f"error: the preflight refuses TuningJob {name}"
                          + (f" ({error.reason}): {error.message}" if error is not None else "")
                          + "; nothing was run", file=sys.stderr)
                    return ExitCode.PERMANENT
                return self._finish(tracker)
            pins = tuple(pinned_datasets(job.spec, datasets, preflight.report))
            config = pin_revisions(config, tracker.status.pinned if tracker.status is not None else None)
        tracker.pins = pins
        config_path.write_text(config_json(config), encoding="utf-8")
        if self.dry_run:
            refusal = self._trainer_check(job, config, config_path)
            if refusal:
                self.display.close()
                print(f"error: {refusal}; nothing was run", file=sys.stderr)
                return ExitCode.PERMANENT
            self._print_dry_run(config, config_path)
            return ExitCode.OK

        for claim in writable:
            Path(config.mounts.pvcs[claim]).mkdir(parents=True, exist_ok=True)
        self._prepare_run_folder(config, tracker)
        return self._train(job, config, config_path, tracker)

    def _prepare_run_folder(self, config: TrainerConfig, tracker: StatusTracker) -> None:
        """Say what the trainer will find in the run folder: nothing, checkpoints, a finished model;
        and that an edited manifest (another run hash) starts clean rather than reusing the old run."""
        folder = run_folder(config)
        if self.restart and folder.exists():
            shutil.rmtree(folder)
            self.display.message(f"--restart: removed the run folder {folder}")
        for earlier in earlier_runs(config):
            tracker.note(EventRecord(
                "Normal", "SpecChanged",
                f"the manifest changed what the model is trained from since run {earlier.name}: this run starts "
                f"from step 0 in {folder.name}; the earlier run stays in {earlier} (delete it to free the space)"))
        if (folder / FINAL_DIR / FINISHED_MARKER).is_file():
            self.display.message(f"this run finished before ({folder}): publishing its model without training; "
                                 "--restart trains it again from step 0")

    def _trainer_argv_env(self, job: TuningJob, config: TrainerConfig,
                          config_path: Path) -> tuple[dict[str, Any], list[str], dict[str, str]]:
        """The rendered Job, and the command line and environment its container would get."""
        rendered = build_training_job(job, config, self.settings, _owner(job))
        container = container_of(rendered)
        env = process_env(container, job.metadata.namespace, self.manifests, os.environ)
        return rendered, [*trainer_command(), *process_args(container, config_path)], env

    def _preflight(self, job: TuningJob, config: TrainerConfig, job_dir: Path, tracker: StatusTracker,
                   datasets: DatasetsObservation) -> PreflightVerdict | None:
        """`kubetune-trainer preflight` as the operator's preflight Job would run it; its verdict, or None
        when it failed (the run is over, as in the cluster: no training starts)."""
        config = with_gpu_memory(config, self.settings)
        config_path, result_path = job_dir / "preflight-config.json", job_dir / "preflight-result.json"
        config_path.write_text(config_json(config), encoding="utf-8")
        rendered = build_preflight_job(job, config, self.settings, _owner(job))
        container = container_of(rendered)
        env = process_env(container, job.metadata.namespace, self.manifests, os.environ)
        argv = [*trainer_command(), *process_args(container, config_path), "--result-path", str(result_path)]
        job_name = rendered["metadata"]["name"]
        self.display.message("preflight: checking the token, base model, output repo, data and GPU memory")
        running_job, running_pod = running_observation(job_name, f"{job_name}-local", utc_now())
        tracker.observe(RunObservation(datasets=datasets, preflight=PreflightObservation(running_job, running_pod)))
        outcome = LocalProcess(argv, env=env, log_path=job_dir / "preflight.log", result_path=result_path).run()
        if outcome.interrupted:
            raise RunInterrupted(f"the preflight of TuningJob {job.metadata.name} was interrupted")
        done_job, done_pod = finished_observation(job_name, f"{job_name}-local", outcome)
        observed = PreflightObservation(done_job, done_pod)
        tracker.observe(RunObservation(datasets=datasets, preflight=observed))
        verdict = preflight_verdict(observed)
        self.display.message(f"preflight: {verdict.stage.value}: {verdict.message}")
        return verdict if verdict.stage is PreflightStage.PASSED else None

    def _trainer_check(self, job: TuningJob, config: TrainerConfig, config_path: Path) -> str | None:
        """What the trainer would refuse at start (QLoRA without CUDA, ...), asked of the trainer itself."""
        _, argv, env = self._trainer_argv_env(job, config, config_path)
        job_dir = config_path.parent
        log_path, result_path = job_dir / "check.log", job_dir / "check-result.json"
        outcome = LocalProcess([*argv, "--check", "--result-path", str(result_path)], env=env,
                               log_path=log_path, result_path=result_path).run()
        if outcome.interrupted:
            raise RunInterrupted(f"the trainer's check of TuningJob {job.metadata.name} was interrupted")
        if outcome.exit_code == ExitCode.OK:
            return None
        result = parse_termination_message(outcome.termination_message)
        if result is not None and result.message:
            return f"the trainer refuses TuningJob {job.metadata.name} ({result.reason}): {result.message}"
        return f"the trainer's check of TuningJob {job.metadata.name} failed (exit code {outcome.exit_code}): " \
               f"see {log_path}"

    def _train(self, job: TuningJob, config: TrainerConfig, config_path: Path, tracker: StatusTracker) -> int:
        rendered, argv, env = self._trainer_argv_env(job, config, config_path)
        job_dir = config_path.parent
        log_path = job_dir / "trainer.log"
        job_name = rendered["metadata"]["name"]
        self.display.message(f"training: log in {log_path}; model and checkpoints in {config.work_dir}")

        lines: deque[str] = deque(maxlen=_LOG_WINDOW)
        started = utc_now()
        pod_name = f"{job_name}-local"
        running_job, running_pod = running_observation(job_name, pod_name, started)
        # status.workDir, as the operator reads it from the Job: here the local run folder.
        running_job = replace(running_job, work_dir=str(run_folder(config)))
        running_times = PodTimes(running_since=started)
        tracker.observe(RunObservation(job=running_job, pod=running_pod, pod_times=running_times,
                                       pinned_datasets=tracker.pins))

        def on_line(line: str) -> None:
            lines.append(line)
            event = parse_line(line)
            if event is None:
                return
            if isinstance(event, StageEvent):
                self.display.message(f"[{event.stage.value}] {event.message}".rstrip())
            elif isinstance(event, ProgressEvent):
                self.display.progress(event)
            tracker.observe(RunObservation(job=running_job, pod=running_pod, log=summarize(lines),
                                           pod_times=running_times, pinned_datasets=tracker.pins))

        process = LocalProcess(argv, env=env, log_path=log_path, result_path=Path(config.result_path),
                               on_line=on_line)
        # Appended: after Ctrl-C and a resume, one file tells the whole story.
        outcome = process.run(append_log=True)
        self.display.close()
        done_job, done_pod = finished_observation(job_name, pod_name, outcome)
        done_job = replace(done_job, work_dir=running_job.work_dir)
        ran = (outcome.finished_at - outcome.started_at).total_seconds()
        tracker.observe(RunObservation(job=done_job, pod=done_pod, log=summarize(lines),
                                       pod_times=PodTimes(finished_seconds=ran), pinned_datasets=tracker.pins))
        code = self._finish(tracker)
        folder = run_folder(config)
        if outcome.interrupted:
            self.display.message(f"interrupted: checkpoints are in {folder / 'checkpoints'}; "
                                 "run the same command again to resume (add --restart to start over)")
            return ExitCode.INTERRUPTED
        self.display.message(f"full trainer log: {log_path}")
        self.display.message(f"run folder: {folder} (the same command again resumes it or only publishes its "
                             "model; --restart starts over)")
        return code

    def _local_launch(self, job: TuningJob, config: TrainerConfig) -> TrainerConfig:
        """One machine, --processes processes: the cluster's node and GPU counts do not apply here."""
        resources = job.spec.resources
        asked = world_size(resources.nodes, resources.gpus)
        if asked != self.processes:
            self.display.message(
                f"note: resources ask for {asked} training process(es) ({resources.nodes} node(s) x "
                f"{max(1, resources.gpus)}); this local run uses {self.processes} (--processes)")
        launch = LaunchPlan(nodes=1, processes_per_node=self.processes, run_id=f"local-{job.metadata.name}")
        return config.model_copy(update={"launch": launch})

    def _finish(self, tracker: StatusTracker) -> int:
        self.display.close()
        print(file=self.out)
        print(describe_tuning_job(tracker.current(), tracker.events), end="", file=self.out, flush=True)
        phase = tracker.status.phase if tracker.status is not None else None
        return ExitCode.OK if phase is TuningJobPhase.SUCCEEDED else ExitCode.RETRYABLE

    def _print_dry_run(self, config: TrainerConfig, config_path: Path) -> None:
        self.display.message(f"dry run: the manifests and datasets are valid; the trainer would run with "
                             f"{config_path}:")
        print(yaml.safe_dump(config.to_wire(), sort_keys=False), end="", file=self.out, flush=True)
