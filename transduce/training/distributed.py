"""Data-parallel training over processes started by torchrun (torch.distributed).

    torchrun --nproc_per_node 4 -m transduce train config.yaml        # one machine, 4 GPUs
    torchrun --nnodes 2 --node_rank N --master_addr HOST --nproc_per_node 8 \\
        -m transduce train config.yaml                                # two machines

Every process runs the same training program on its share of each epoch's batches, and
DistributedDataParallel averages the gradients. Processes agree by construction rather than
by messages where they can: all of them validate the same weights, so they compute the same
scores, learning rates and early-stopping decisions. Only rank 0 writes files, so
train.out_dir must be on a filesystem that every machine can read to --resume across
machines. NCCL on CUDA devices, gloo on CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # index of this process on its machine: its GPU

    @property
    def main(self) -> bool:
        return self.rank == 0


def init(use_cuda: bool) -> World:
    """Join the process group torchrun describes in the environment (WORLD_SIZE, RANK,
    LOCAL_RANK, MASTER_ADDR/PORT); without torchrun, a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"process {local_rank} of this machine has no GPU of its own "
                             f"({torch.cuda.device_count()} visible): start at most that many "
                             "processes per machine (--nproc_per_node), or train on the CPU "
                             "with --set train.device=cpu")
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), local_rank)


def shutdown(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def reduce(world: World, values: list[float], op: str = "sum",
           device: torch.device | None = None) -> list[float]:
    """Element-wise sum or max of `values` over all processes."""
    if world.size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t.tolist()


def barrier(world: World) -> None:
    """Wait until every process gets here (rank 0 preparing the data, say)."""
    if world.size > 1:
        dist.barrier()
