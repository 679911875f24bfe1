"""Validate each Dataset of the files once, as the operator's validation Job would.

`kubetune-trainer validate` runs as a local process with the ValidatorConfig and env the
builders render for the validation Job; its report becomes the Dataset's status through the
operator's own derivation, so a local run refuses exactly the data a cluster would refuse.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from kubetune.api import Dataset, DatasetPhase, DatasetStatus
from kubetune.builders import build_validation_job, config_json, resolve_validator_config
from kubetune.local.describe import TimedEvent, describe_dataset
from kubetune.local.display import ProgressDisplay
from kubetune.local.manifests import Key, Manifests
from kubetune.local.runner import LocalProcess, RunInterrupted, trainer_command
from kubetune.local.session import finished_observation, running_observation
from kubetune.local.workspace import (
    Workspace,
    container_of,
    localize_validator_config,
    missing_input_volumes,
    process_args,
    process_env,
)
from kubetune.settings import Settings
from kubetune.status.dataset import derive_dataset_status
from kubetune.status.events import dataset_events
from kubetune.status.observe import parse_validation_report


class DatasetValidator:
    def __init__(self, manifests: Manifests, workspace: Workspace, display: ProgressDisplay,
                 settings: Settings) -> None:
        self.manifests = manifests
        self.workspace = workspace
        self.display = display
        self.settings = settings
        self._validated: dict[Key, Dataset] = {}

    @staticmethod
    def is_ready(status: DatasetStatus | None) -> bool:
        return status is not None and status.phase is DatasetPhase.READY

    def validate(self, key: Key) -> Dataset:
        """The Dataset with the status validation gave it (validated on first use, then remembered)."""
        if key not in self._validated:
            self._validated[key] = self._run(self.manifests.datasets[key].obj)
        return self._validated[key]

    def _run(self, ds: Dataset) -> Dataset:
        namespace, name = ds.metadata.namespace, ds.metadata.name
        source = ds.spec.source.describe()
        config = localize_validator_config(resolve_validator_config(ds, self.settings), self.workspace,
                                           self.manifests)
        folder = self.workspace.dataset_dir(namespace, name)
        folder.mkdir(parents=True, exist_ok=True)
        events: list[TimedEvent] = []
        status: DatasetStatus | None = None

        def update(new: DatasetStatus) -> None:
            nonlocal status
            now = datetime.now(UTC)
            events.extend(TimedEvent(record, now) for record in dataset_events(status, new))
            status = new

        missing = missing_input_volumes(config.mounts, writable=set())
        if missing:
            hint = "; ".join(f"claim {claim} maps to {path}, which does not exist: pass --volume {claim}=FOLDER"
                             for claim, path in missing)
            update(derive_dataset_status(None, generation=None, source=source, job_name="", job=None, pod=None,
                                         spec_error=hint, now=datetime.now(UTC)))
            return self._report(ds, status, events)

        config_path = folder / "config.json"
        config_path.write_text(config_json(config), encoding="utf-8")
        rendered = build_validation_job(ds, config, self.settings, {"apiVersion": ds.api_version, "kind": ds.kind,
                                                                     "name": name, "uid": "local"})
        container = container_of(rendered)
        job_name = rendered["metadata"]["name"]
        pod_name = f"{job_name}-local"
        started = datetime.now(UTC)
        job, pod = running_observation(job_name, pod_name, started)
        update(derive_dataset_status(None, generation=None, source=source, job_name=job_name, job=job, pod=pod,
                                     now=started))
        self.display.message(f"Dataset {namespace}/{name}: validating {source}")
        process = LocalProcess([*trainer_command(), *process_args(container, config_path)],
                               env=process_env(container, namespace, self.manifests, os.environ),
                               log_path=folder / "validator.log", result_path=Path(config.result_path))
        outcome = process.run()
        if outcome.interrupted:
            raise RunInterrupted(f"validation of Dataset {namespace}/{name} was interrupted")
        job, pod = finished_observation(job_name, pod_name, outcome)
        update(derive_dataset_status(status, generation=None, source=source, job_name=job_name, job=job, pod=pod,
                                     report=parse_validation_report(outcome.termination_message),
                                     now=outcome.finished_at))
        return self._report(ds, status, events)

    def _report(self, ds: Dataset, status: DatasetStatus | None, events: list[TimedEvent]) -> Dataset:
        validated = ds.model_copy(update={"status": status})
        if self.is_ready(status):
            assert status is not None
            self.display.message(f"Dataset {ds.metadata.namespace}/{ds.metadata.name}: Ready ({status.message})")
        else:
            # The whole story, as `kubectl describe dataset` would tell it: phase, errors, preview.
            self.display.message(describe_dataset(validated, events).rstrip("\n"))
        return validated
