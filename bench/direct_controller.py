"""The by-hand baseline of bench.control_plane: the least a controller does per TuningJob on this rig.

    python -m bench.direct_controller URL NAMESPACE NAMES_FILE WORKERS

Watches TuningJobs and, for each one ADDED whose name NAMES_FILE lists (one per line), POSTs its
ConfigMap and then its Job, with WORKERS TuningJobs in hand at once (the operator's worker count).
The two objects are the operator's own (kubetune's builders, rendered before the burst from the
benchmark's TuningJob), so the API server stores and sends the same bytes; only the owner's uid is
filled in when the TuningJob arrives. No validation, no cache, no status patch, no Events: what is
left is what any controller has to do (one watch event in, two creates out), so its apply -> Job
latency is the floor of the rig it runs on, and the operator's is quoted against it. Prints "ready"
once its watch is open.
"""

from __future__ import annotations

import asyncio
import copy
import sys
from pathlib import Path
from typing import Any

AGENT = "kubetune-bench-baseline/1"
TUNINGJOBS = "kubetune.io/v1alpha1/tuningjobs"


def rendered_children(name: str, namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ConfigMap and Job the operator creates for the benchmark's TuningJob `name`, with a placeholder
    owner uid (`with_owner_uid` puts the real one in)."""
    from bench.control_plane import tuningjob
    from kubetune.builders import (
        build_trainer_config_map,
        build_training_job,
        owner_reference,
        resolve_trainer_config,
    )
    from kubetune.controller.parsing import parse_tuningjob
    from kubetune.settings import Settings

    body = tuningjob(name, namespace)
    body["metadata"]["uid"] = "filled-in-when-the-tuningjob-arrives"
    tj, error = parse_tuningjob(body)
    if tj is None:
        raise ValueError(f"the benchmark's TuningJob does not validate: {error}")
    settings = Settings.from_env()
    config = resolve_trainer_config(tj, {}, settings)
    owner = owner_reference(body)
    return build_trainer_config_map(tj, config, owner), build_training_job(tj, config, settings, owner)


def with_owner_uid(obj: dict[str, Any], uid: str) -> dict[str, Any]:
    filled = copy.copy(obj)
    filled["metadata"] = {**obj["metadata"], "ownerReferences": [
        {**reference, "uid": uid} for reference in obj["metadata"]["ownerReferences"]]}
    return filled


async def run(url: str, namespace: str, names: list[str], workers: int) -> None:
    from support.kube_client import RigClient, resource_path

    children = {name: rendered_children(name, namespace) for name in names}
    client = RigClient(url, AGENT)
    in_hand = asyncio.Semaphore(workers)
    tasks: set[asyncio.Task[None]] = set()

    async def create_children(name: str, uid: str) -> None:
        config_map, job = children.pop(name)
        async with in_hand:
            await client.request("POST", resource_path("v1/configmaps", namespace), with_owner_uid(config_map, uid))
            await client.request("POST", resource_path("batch/v1/jobs", namespace), with_owner_uid(job, uid))

    _, since = await client.list(TUNINGJOBS)
    watch = client.watch(TUNINGJOBS, since)
    first = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0.2)  # the watch request is on the wire before the benchmark is told to go
    print("ready", flush=True)
    event = await first
    while True:
        meta = event["object"]["metadata"]
        if event["type"] == "ADDED" and meta["name"] in children:
            task = asyncio.create_task(create_children(meta["name"], meta["uid"]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        event = await anext(watch)


def main() -> None:
    url, namespace, names_file, workers = sys.argv[1:5]
    asyncio.run(run(url, namespace, Path(names_file).read_text().split(), int(workers)))


if __name__ == "__main__":
    main()
