"""Who this training process is in a distributed run, and the few agreements the ranks need.

torchrun starts one process per GPU (or CPU slot) on every node and tells each its place
through the environment (RANK, LOCAL_RANK, WORLD_SIZE, ...). The Trainer does the
data-parallel work itself (DDP or FSDP, a DistributedSampler-like split of the batches);
what is kubetune's is around it, and follows one rule: rank 0 decides, the others follow.

- Only rank 0 speaks: progress lines, the model card, the push, the final result.
- Decisions that a rank's own disk could answer differently are taken by rank 0 and
  broadcast: whether a finished model exists, the base model's evaluation.
- A checkpoint is resumed only if every rank has it (per-node volumes may differ).
- Every rank must train on the same tokenized rows: their fingerprints are compared.
- A stop request (SIGTERM on any node) stops every rank at the same step, so the
  checkpoint it leaves is consistent.

These run over a separate gloo process group on the CPU (small Python objects, long
timeouts: a follower may wait hours while rank 0 downloads a model or pushes one), beside
the NCCL (or gloo) group the Trainer trains with. With one process everything here is a
no-op, so the single-process path is the same code.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from kubetune.api.contract import FailureReason
from kubetune_trainer.errors import TrainerFailure

T = TypeVar("T")
# Training collectives (the Trainer's group): long enough for a slow step or checkpoint.
TRAINING_TIMEOUT = timedelta(minutes=30)
# kubetune's own agreements: a follower waits here while rank 0 downloads or pushes.
CONTROL_TIMEOUT = timedelta(hours=12)
_SHARED_PROBE = ".kubetune-shared-probe"
NODE_INDEX_ENV = "JOB_COMPLETION_INDEX"  # set by Kubernetes in each Pod of an Indexed Job


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    node_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        return self.local_rank == 0

    def owns_folder(self, shared: bool) -> bool:
        """Whether this rank writes what one rank per work folder writes: rank 0 when every node
        shares the folder, each node's first rank when each node has its own."""
        return self.is_main if shared else self.is_local_main

    def describe(self) -> str:
        return f"rank {self.rank}/{self.world_size} (node {self.node_rank}, local rank {self.local_rank})"


@cache
def ranks() -> Ranks:
    """This process's place, from the environment torchrun sets (one process: rank 0 of 1)."""
    env = os.environ
    world = int(env.get("WORLD_SIZE", "1"))
    if world <= 1 or "LOCAL_RANK" not in env:
        return Ranks()
    return Ranks(rank=int(env["RANK"]), local_rank=int(env["LOCAL_RANK"]), world_size=world,
                 local_world_size=int(env.get("LOCAL_WORLD_SIZE", "1")), node_rank=int(env.get("GROUP_RANK", "0")))


def in_worker() -> bool:
    """Whether torchrun started this process (so it must not start torchrun itself)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or ranks().distributed


_control: Any = None


def start() -> None:
    """Join the run's process groups (before anything that agrees or trains). A no-op alone."""
    global _control
    me = ranks()
    if not me.distributed or _control is not None:
        return
    index = os.environ.get(NODE_INDEX_ENV)
    if me.is_main and index not in (None, "0"):
        # The operator reads Pod 0's log and result; c10d numbers nodes by host name, which puts
        # Pod 0 (<job>-0.<service>) first. Should that ever not hold, say so rather than go silent.
        raise TrainerFailure(FailureReason.TRAINING_FAILED,
                             f"rank 0 started in Pod {index} of the Indexed Job, not in Pod 0", retryable=True)
    import torch
    import torch.distributed as dist

    backend = "gloo"
    if torch.cuda.is_available():
        # Before NCCL starts: each rank drives its own GPU, never GPU 0 for all.
        torch.cuda.set_device(me.local_rank)
        backend = "nccl"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=TRAINING_TIMEOUT)
    _control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)


def stop() -> None:
    global _control
    if _control is None:
        return
    import torch.distributed as dist

    _control = None
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if _control is not None:
        import torch.distributed as dist

        dist.barrier(group=_control)


def broadcast(value: T) -> T:
    """Rank 0's `value`, on every rank (the others' own value is ignored)."""
    if _control is None:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0, group=_control)
    return box[0]


def decide(choose: Callable[[], T]) -> T:
    """`choose()` run on rank 0 only, its answer on every rank."""
    return broadcast(choose() if ranks().is_main else None)  # type: ignore[return-value]


def gather(value: T) -> list[T]:
    """Every rank's `value`, in rank order, on every rank."""
    if _control is None:
        return [value]
    import torch.distributed as dist

    found: list[Any] = [None] * ranks().world_size
    dist.all_gather_object(found, value, group=_control)
    return found


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on any (a stop request must stop all at one step)."""
    if _control is None:
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_control)
    return bool(value.item())


def shared_across_nodes(folder: Path) -> bool:
    """Whether every node sees the same `folder` (a ReadWriteMany volume) or each has its own.

    Rank 0 writes a random token; every rank reads it back. Within one node all ranks share
    the folder anyway; with one node this is trivially true.
    """
    me = ranks()
    if not me.distributed:
        return True
    probe = folder / _SHARED_PROBE
    token = secrets.token_hex(8)
    if me.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_text(token, encoding="utf-8")
    token = broadcast(token)
    try:
        seen = probe.read_text(encoding="utf-8") == token
    except OSError:
        seen = False
    shared = all(gather(seen))  # every rank has read the probe once this returns
    if me.is_main:
        probe.unlink(missing_ok=True)
    return shared


@contextmanager
def preparers_first(shared: bool) -> Iterator[None]:
    """Run the body on the ranks that prepare the work folder first, then on the others.

    Downloads and the scratch model land in the work folder and caches: with a shared folder
    rank 0 prepares alone; with one folder per node each node's first rank does, in parallel.
    The others then find everything in place.
    """
    preparer = ranks().owns_folder(shared)
    if not preparer:
        barrier()
    try:
        yield
    finally:
        if preparer:
            # Also when preparing failed: the others then try for themselves and fail alike (bad
            # data is bad on every rank), rather than wait for a barrier that never comes.
            barrier()


def fingerprint(*arrays: Any) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(b"|" if array is None else memoryview(array).cast("B"))
    return digest.hexdigest()[:16]


def check_same_everywhere(what: str, value: str) -> None:
    """Fail clearly when the ranks do not hold the same `value` (e.g. a fingerprint of the data)."""
    found = gather(value)
    if len(set(found)) > 1:
        odd = [rank for rank, v in enumerate(found) if v != found[0]]
        raise TrainerFailure(
            FailureReason.DATASET_INVALID,
            f"the training processes prepared different {what} (ranks {odd} differ from rank 0): the source changed "
            "while they read it, or the nodes hold different files; a new attempt reads it again",
            retryable=True,
        )


def common_checkpoint(steps_here: list[int]) -> int | None:
    """The newest checkpoint step every rank has, or None (then training starts over)."""
    everyone = gather(sorted(steps_here))
    common = set(everyone[0]).intersection(*map(set, everyone[1:]))
    return max(common) if common else None


def is_peer_failure(error: BaseException) -> bool:
    """Whether `error` is a collective that broke because another process of the run died."""
    if not ranks().distributed:
        return False
    from torch.distributed import DistError

    if isinstance(error, DistError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        marker in text for marker in ("Connection closed by peer", "Connection reset by peer", "gloo", "NCCL"))
