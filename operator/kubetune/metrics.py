"""Prometheus metrics of the operator: what a platform engineer graphs and alerts on.

    kubetune_tuningjobs{phase}                         TuningJobs the operator knows, by phase
    kubetune_datasets{phase}                           Datasets, by phase
    kubetune_reconcile_duration_seconds{kind}          time spent in one reconcile pass
    kubetune_failures_total{kind, reason}              runs and validations that ended in failure
    kubetune_workqueue_depth                           TuningJobs and Datasets waiting for a worker
    kubetune_tuningjob_progress_percent{namespace, name}
    kubetune_tuningjob_loss{namespace, name}
    kubetune_tuningjob_tokens_per_second{namespace, name}
    kubetune_tuningjob_gpu_seconds{namespace, name}     GPUs x seconds the run's trainer Pods ran
    kubetune_tuningjob_trained_tokens{namespace, name}
    kubetune_gpu_seconds_total{namespace}               GPU time of all runs, for accounting by team
    kubetune_trained_tokens_total{namespace}

The *_total counters grow by what each run's status.usage grew by since this operator last saw
it; a run first seen after an operator start sets the baseline without counting, so a restart
never counts a run's past twice (Prometheus' increase() copes with the counter's reset).

Each `OperatorMetrics` has its own registry, so tests (and several operators in one process)
never trip over prometheus-client's global one.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter as Tally
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from kubetune.api.dataset import DatasetPhase
from kubetune.api.guardrails import Usage
from kubetune.api.tuningjobstatus import TrainingProgress, TuningJobPhase
from kubetune.settings import ENV_PREFIX
from kubetune.usererror import UserError

Key = tuple[str, str]  # (namespace, name)


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._lock = threading.Lock()
        self._tuningjob_phases: dict[Key, str] = {}
        self._dataset_phases: dict[Key, str] = {}
        # Objects per phase, kept as they move: recounting every object on every pass grows with their number.
        self._tuningjob_counts: Tally[str] = Tally()
        self._dataset_counts: Tally[str] = Tally()
        self.tuningjobs = Gauge("kubetune_tuningjobs", "TuningJobs known to the operator, by phase.",
                                ["phase"], registry=self.registry)
        self.datasets = Gauge("kubetune_datasets", "Datasets known to the operator, by phase.",
                              ["phase"], registry=self.registry)
        self.reconcile_duration = Histogram(
            "kubetune_reconcile_duration_seconds", "Time spent in one reconcile pass.", ["kind"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=self.registry)
        self.failures = Counter("kubetune_failures", "Runs and validations that ended in failure.",
                                ["kind", "reason"], registry=self.registry)
        labels = ["namespace", "name"]
        self.progress = Gauge("kubetune_tuningjob_progress_percent", "Training progress in percent.",
                              labels, registry=self.registry)
        self.loss = Gauge("kubetune_tuningjob_loss", "Latest training loss.", labels, registry=self.registry)
        self.tokens_per_second = Gauge("kubetune_tuningjob_tokens_per_second", "Training throughput.",
                                       labels, registry=self.registry)
        self.gpu_seconds = Gauge("kubetune_tuningjob_gpu_seconds", "GPUs x seconds the run's trainer Pods ran.",
                                 labels, registry=self.registry)
        self.trained_tokens = Gauge("kubetune_tuningjob_trained_tokens", "Tokens the run trained on.",
                                    labels, registry=self.registry)
        self.gpu_seconds_total = Counter("kubetune_gpu_seconds", "GPU seconds of all runs, by namespace.",
                                         ["namespace"], registry=self.registry)
        self.trained_tokens_total = Counter("kubetune_trained_tokens", "Tokens trained on by all runs, by namespace.",
                                            ["namespace"], registry=self.registry)
        self._usage_seen: dict[Key, tuple[float, float]] = {}  # (gpu seconds, tokens) already counted
        self.queue_depth = Gauge("kubetune_workqueue_depth", "TuningJobs and Datasets waiting for a worker.",
                                 registry=self.registry)
        for tj_phase in TuningJobPhase:
            self.tuningjobs.labels(tj_phase.value).set(0)
        for ds_phase in DatasetPhase:
            self.datasets.labels(ds_phase.value).set(0)

    def serve(self, port: int) -> None:
        """Expose /metrics on `port` (0: do not serve); a port that is taken is the user's to fix."""
        if not port:
            return
        try:
            start_http_server(port, registry=self.registry)
        except OSError as exc:
            raise UserError(f"cannot serve metrics on port {port}: {exc.strerror or exc}: stop what uses it, "
                            f"or set {ENV_PREFIX}METRICS_PORT to a free port (0 turns metrics off)") from None

    def watch_queue(self, depth: Callable[[], float]) -> None:
        """Read the work queue's depth whenever /metrics is scraped."""
        self.queue_depth.set_function(depth)

    def observe_tuningjob(self, namespace: str, name: str, phase: str | None,
                          progress: TrainingProgress | None) -> None:
        with self._lock:
            _move(self.tuningjobs, self._tuningjob_phases, self._tuningjob_counts, (namespace, name), phase)
        if progress is None:
            return
        for gauge, value in ((self.progress, progress.percent), (self.loss, progress.loss),
                             (self.tokens_per_second, progress.tokens_per_second)):
            if value is not None:
                gauge.labels(namespace, name).set(value)

    def observe_usage(self, namespace: str, name: str, usage: Usage | None) -> None:
        """Publish a run's status.usage, and add what it grew by to the namespace's totals."""
        if usage is None:  # not started: everything it will use is new
            with self._lock:
                self._usage_seen.setdefault((namespace, name), (0.0, 0.0))
            return
        gpu, tokens = usage.gpu_seconds or 0.0, float(usage.trained_tokens or 0)
        if usage.gpu_seconds is not None:
            self.gpu_seconds.labels(namespace, name).set(gpu)
        if usage.trained_tokens is not None:
            self.trained_tokens.labels(namespace, name).set(tokens)
        with self._lock:
            before = self._usage_seen.get((namespace, name))
            self._usage_seen[(namespace, name)] = \
                (max(gpu, before[0]), max(tokens, before[1])) if before else (gpu, tokens)
        if before is None:
            return  # first seen already running (an operator restart): a baseline, not new usage
        if gpu > before[0]:
            self.gpu_seconds_total.labels(namespace).inc(gpu - before[0])
        if tokens > before[1]:
            self.trained_tokens_total.labels(namespace).inc(tokens - before[1])

    def observe_dataset(self, namespace: str, name: str, phase: str | None) -> None:
        with self._lock:
            _move(self.datasets, self._dataset_phases, self._dataset_counts, (namespace, name), phase)

    def count_failure(self, kind: str, reason: str) -> None:
        self.failures.labels(kind, reason).inc()

    def forget_tuningjob(self, namespace: str, name: str) -> None:
        """Drop a deleted TuningJob's series, so dashboards do not show ghosts."""
        self.observe_tuningjob(namespace, name, None, None)
        with self._lock:
            self._usage_seen.pop((namespace, name), None)
        for gauge in (self.progress, self.loss, self.tokens_per_second, self.gpu_seconds, self.trained_tokens):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name)

    def forget_dataset(self, namespace: str, name: str) -> None:
        self.observe_dataset(namespace, name, None)


def _move(gauge: Gauge, phases: dict[Key, str], counts: Tally[str], key: Key, phase: str | None) -> None:
    """Record `key` in `phase` (None: gone) and update the gauge of the phases it left and entered."""
    before = phases.get(key)
    if before == phase:
        return
    if phase is None:
        del phases[key]
    else:
        phases[key] = phase
        counts[phase] += 1
        gauge.labels(phase).set(counts[phase])
    if before is not None:
        counts[before] -= 1
        gauge.labels(before).set(counts[before])
