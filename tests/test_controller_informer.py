"""The controller's informers: list, then watch from the listing's version; resume where they got to;
on 410 Gone list again and forget what was deleted meanwhile; stop from another thread."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kubetune.builders import LABEL_DATASET, LABEL_TUNINGJOB
from kubetune.builders.names import LABEL_MANAGED_BY, MANAGED_BY
from kubetune.controller.informer import Informer, WatchScope
from kubetune.controller.manager import Controller
from kubetune.controller.objects import JOB, TUNINGJOB
from kubetune.kube import KubeClient, WatchStream
from kubetune.metrics import OperatorMetrics
from support.kube_cluster import WIRING_SETTINGS, wait_for

NS = "default"
JOBS = WatchScope("jobs", JOB, "batch/v1", None, LABEL_TUNINGJOB)


def tuningjob(name: str, version: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "resourceVersion": str(version),
                         "generation": 1},
            "spec": {"baseModel": {"scratch": {}}}, "status": {}}


def job(owner: str, version: int, *, labelled: bool = True, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": f"{owner}-train", "namespace": NS, "resourceVersion": str(version),
                         "labels": {LABEL_TUNINGJOB: owner} if labelled else {"team": "nlp"},
                         "ownerReferences": [{"apiVersion": "kubetune.io/v1alpha1", "kind": "TuningJob",
                                              "name": owner, "uid": f"uid-{owner}", "controller": True}]},
            "spec": {"suspend": False}, "status": status}


class ScriptedStream:
    """A watch that sends its events, then ends (the server's timeout) or, if `hold`, waits to be closed."""

    def __init__(self, events: list[dict[str, Any]], *, hold: bool = False, fail: Exception | None = None) -> None:
        self.events, self.hold, self.fail = events, hold, fail
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self.events
        if self.fail is not None:
            raise self.fail
        if self.hold:
            self.closed.wait(10)

    def close(self) -> None:
        self.closed.set()


class ScriptedClient:
    """Listings and watches per (plural, label), played in order; what was asked, recorded."""

    def __init__(self) -> None:
        self.listings: dict[tuple[str, str | None], deque[tuple[list[dict[str, Any]], str]]] = {}
        self.watches: dict[tuple[str, str | None], deque[ScriptedStream | Exception]] = {}
        self.asked: list[tuple[str, str, str | None, str | None]] = []  # (call, plural, label, version)
        self.held: list[ScriptedStream] = []

    def list_snapshot(self, plural: str, namespace: str | None, *,
                      labels: Mapping[str, str | None] | None = None) -> tuple[list[dict[str, Any]], str]:
        label = next(iter(labels or {}), None)
        self.asked.append(("list", plural, label, None))
        queue = self.listings.get((plural, label))
        return queue.popleft() if queue else ([], "1")

    def watch(self, plural: str, namespace: str | None, *, version: str,
              labels: Mapping[str, str | None] | None = None, timeout_seconds: int = 300) -> ScriptedStream:
        label = next(iter(labels or {}), None)
        self.asked.append(("watch", plural, label, version))
        queue = self.watches.get((plural, label))
        step = queue.popleft() if queue else ScriptedStream([], hold=True)
        if isinstance(step, Exception):
            raise step
        if step.hold:
            self.held.append(step)
        return step

    def watched_from(self, plural: str, label: str | None) -> list[str | None]:
        return [v for call, p, lab, v in self.asked if call == "watch" and p == plural and lab == label]


def event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": obj}


def gone() -> dict[str, Any]:
    return {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                        "message": "too old resource version: 5 (40)"}}


def test_an_informer_watches_from_the_listed_version_and_keeps_the_latest_it_saw() -> None:
    client = ScriptedClient()
    client.listings[("jobs", LABEL_TUNINGJOB)] = deque([([job("a", 4)], "7")])
    client.watches[("jobs", LABEL_TUNINGJOB)] = deque([ScriptedStream([
        event("MODIFIED", job("a", 8, active=1)),
        {"type": "BOOKMARK", "object": {"kind": "Job", "metadata": {"resourceVersion": "12"}}},
        event("ADDED", job("b", 13, labelled=False)),  # a server that ignored the selector
    ])])
    delivered: list[tuple[str | None, str, str]] = []
    informer = Informer(client, JOBS, lambda t, o: delivered.append((t, o["kind"], o["metadata"]["name"])),
                        list)
    listed = informer.list()
    assert [(o["kind"], o["apiVersion"]) for o in listed] == [("Job", "batch/v1")]  # list items carry no kind
    assert informer.version == "7"
    informer.watch_once()
    assert client.watched_from("jobs", LABEL_TUNINGJOB) == ["7"]
    assert delivered == [("MODIFIED", "Job", "a-train")]  # the bookmark moves the version on, silently
    assert informer.version == "13"


def test_an_expired_watch_lists_again_and_what_was_deleted_meanwhile_is_delivered_deleted() -> None:
    client = ScriptedClient()
    ours = {LABEL_MANAGED_BY: MANAGED_BY}
    client.listings[("jobs", LABEL_MANAGED_BY)] = deque([
        ([with_labels(job("a", 4), ours, LABEL_TUNINGJOB), with_labels(job("b", 5), ours, LABEL_TUNINGJOB)], "5"),
        ([with_labels(job("a", 30, active=1), ours, LABEL_TUNINGJOB)], "40"),  # b's Job was deleted meanwhile
    ])
    client.watches[("jobs", LABEL_MANAGED_BY)] = deque([ScriptedStream([gone()])])
    controller = Controller(WIRING_SETTINGS, KubeClient(), OperatorMetrics(), client)
    controller.prime()
    assert {j["metadata"]["name"] for j in controller.cache.items(JOB)} == {"a-train", "b-train"}
    informer = next(i for i in controller.informers if i.scope.plural == "jobs")
    informer.start()
    try:
        wait_for("the relisting", lambda: len(client.watched_from("jobs", LABEL_MANAGED_BY)) == 2)
    finally:
        informer.stop()
    assert client.watched_from("jobs", LABEL_MANAGED_BY) == ["5", "40"]
    assert [j["metadata"]["name"] for j in controller.cache.items(JOB)] == ["a-train"]
    assert controller.cache.owned((TUNINGJOB, NS, "b"), JOB) == []
    # Both owners are reconciled: a's Job changed, b's is gone.
    taken = {controller.queue.get(timeout=1), controller.queue.get(timeout=1)}
    assert taken == {(TUNINGJOB, NS, "a"), (TUNINGJOB, NS, "b")}


def test_a_relisting_evicts_only_what_the_informer_lists() -> None:
    client = ScriptedClient()
    client.listings[("jobs", LABEL_TUNINGJOB)] = deque([([job("a", 4)], "5"), ([], "9")])
    delivered: list[tuple[str | None, str]] = []
    other_namespace = {**job("c", 3), "kind": "Job", "apiVersion": "batch/v1"}
    other_namespace["metadata"] = {**other_namespace["metadata"], "namespace": "elsewhere"}
    unlabelled = {**job("d", 3, labelled=False), "kind": "Job", "apiVersion": "batch/v1"}
    scope = WatchScope("jobs", JOB, "batch/v1", NS, LABEL_TUNINGJOB)
    cached = [*Informer(client, scope, lambda t, o: None, list).list(), other_namespace, unlabelled]
    Informer(client, scope, lambda t, o: delivered.append((t, o["metadata"]["name"])), lambda: cached).relist()
    assert delivered == [("DELETED", "a-train")]


def test_a_410_answer_to_the_watch_request_lists_again_too() -> None:
    client = ScriptedClient()
    client.listings[("tuningjobs", None)] = deque([([tuningjob("a", 3)], "3"), ([tuningjob("a", 3)], "50")])
    client.watches[("tuningjobs", None)] = deque([ApiException(status=410, reason="Gone")])
    scope = WatchScope("tuningjobs", TUNINGJOB, "kubetune.io/v1alpha1", None, None)
    delivered: list[str | None] = []
    informer = Informer(client, scope, lambda t, o: delivered.append(t), list)
    informer.list()
    informer.start()
    try:
        wait_for("the watch from the new listing", lambda: client.watched_from("tuningjobs", None) == ["3", "50"])
    finally:
        informer.stop()
    assert delivered == [None]  # the relisted object


def test_a_dropped_watch_resumes_from_the_last_version_without_listing() -> None:
    client = ScriptedClient()
    client.listings[("jobs", LABEL_TUNINGJOB)] = deque([([], "5")])
    client.watches[("jobs", LABEL_TUNINGJOB)] = deque([
        ScriptedStream([event("ADDED", job("a", 6))], fail=ConnectionResetError("peer went away")),
        ScriptedStream([event("MODIFIED", job("a", 9, active=1))]),  # then the server's timeout
    ])
    delivered: list[str] = []
    informer = Informer(client, JOBS, lambda t, o: delivered.append(o["metadata"]["resourceVersion"]), list,
                        backoff_start=0.01)
    informer.list()
    informer.start()
    try:
        wait_for("the third watch", lambda: len(client.watched_from("jobs", LABEL_TUNINGJOB)) == 3)
    finally:
        informer.stop()
    assert client.watched_from("jobs", LABEL_TUNINGJOB) == ["5", "6", "9"]
    assert [call for call, *_ in client.asked].count("list") == 1
    assert delivered == ["6", "9"]


def test_stop_ends_a_watch_that_is_waiting_for_events() -> None:
    client = ScriptedClient()
    informer = Informer(client, JOBS, lambda t, o: None, list)
    informer.list()
    informer.start()
    wait_for("the watch", lambda: client.held)
    started = time.monotonic()
    informer.stop(timeout=5)
    assert time.monotonic() - started < 2
    assert client.held[0].closed.is_set()


class ChunkedResponse:
    """What urllib3 hands the watch: chunks that need not end where lines do."""

    chunked = True

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks, self.released, self.cut = chunks, False, False

    def read_chunked(self) -> Iterator[bytes]:
        yield from self.chunks

    def isclosed(self) -> bool:
        return True

    def release_conn(self) -> None:
        self.released = True

    def close(self) -> None:
        self.cut = True

    def shutdown(self) -> None:
        self.cut = True


def test_a_watch_stream_parses_events_split_across_chunks_and_reuses_the_connection() -> None:
    response = ChunkedResponse([b'{"type":"ADDED","object":{"metadata":{"name":"a"}}}\n{"type":"MOD',
                                b'IFIED","object":{"metadata":{"name":"a"}}}\n', b"\n"])
    events = list(WatchStream(response))
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED"]
    assert response.released and not response.cut


def test_a_watch_error_other_than_gone_is_a_failure_not_a_relisting() -> None:
    client = ScriptedClient()
    client.watches[("jobs", LABEL_TUNINGJOB)] = deque([ScriptedStream([
        {"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "etcd is sad"}}])])
    informer = Informer(client, JOBS, lambda t, o: None, list)
    informer.list()
    with pytest.raises(RuntimeError, match="500 etcd is sad"):
        informer.watch_once()
    assert informer.version == "1"


def test_jobs_are_watched_by_the_operators_label_and_kept_only_if_a_run_or_dataset_owns_them() -> None:
    controller = Controller(WIRING_SETTINGS, KubeClient(), OperatorMetrics(), ScriptedClient())
    [scope] = [i.scope for i in controller.informers if i.scope.plural == "jobs"]
    assert scope.labels == {LABEL_MANAGED_BY: MANAGED_BY}  # what the API server filters by
    ours = {LABEL_MANAGED_BY: MANAGED_BY}
    client = ScriptedClient()
    client.listings[("jobs", LABEL_MANAGED_BY)] = deque([([with_labels(job("a", 4), ours, LABEL_DATASET),
                                                           with_labels(job("b", 5), ours)], "5")])
    client.watches[("jobs", LABEL_MANAGED_BY)] = deque([ScriptedStream([
        event("ADDED", with_labels(job("c", 6), ours, LABEL_TUNINGJOB)),
        event("ADDED", with_labels(job("d", 7), {LABEL_MANAGED_BY: "someone-else"}, LABEL_TUNINGJOB)),
        event("ADDED", with_labels(job("e", 8), ours)),  # ours, but neither a run's nor a Dataset's
    ])])
    delivered: list[str] = []
    informer = Informer(client, scope, lambda t, o: delivered.append(o["metadata"]["name"]), list)
    assert [o["metadata"]["name"] for o in informer.list()] == ["a-train"]
    informer.watch_once()
    assert delivered == ["c-train"]


def with_labels(obj: dict[str, Any], labels: dict[str, str], owner: str | None = None) -> dict[str, Any]:
    meta = {**obj["metadata"], "labels": {**labels, **({owner: "x"} if owner else {})}}
    return {**obj, "metadata": meta}
