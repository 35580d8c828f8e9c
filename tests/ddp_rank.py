"""One DDP rank for tests/test_distributed.py, run as its own process: ``python -m ddp_rank '<json>'``.

It joins a real gloo process group, iterates one epoch of an ``AugmentedDataset`` through a DataLoader whose
workers use the given start method, and saves what it received: the labels of every batch (label == dataset
index) and the bytes of every sample. Importable (PYTHONPATH holds tests/), so spawn and forkserver workers can
re-import it as the parent's main module.

``launch``: ``"torchrun"`` reads RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT from the environment, as torchrun sets
them; ``"arguments"`` passes rank and world size to ``init_process_group`` and leaves the environment without
them, as ``torch.multiprocessing.spawn`` scripts do, so that only the process group knows the rank.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from augserve_client.torch_dataset import AugmentedDataset
from torch.utils.data import DataLoader


def main(config: dict) -> None:
    timeout = timedelta(seconds=60)  # a rank whose peer died gives up instead of waiting forever
    if config["launch"] == "torchrun":
        dist.init_process_group("gloo", timeout=timeout)
    else:
        address = f"tcp://127.0.0.1:{config['port']}"
        dist.init_process_group("gloo", init_method=address, rank=config["rank"], world_size=2, timeout=timeout)
    try:
        data = AugmentedDataset(config["url"], config["name"], config["spec"], batch_size=4, seed=5, prefetch=2)
        data.set_epoch(config["epoch"])  # a shared value: it must reach the spawned workers too
        loader = DataLoader(data, batch_size=None, num_workers=2, multiprocessing_context=config["method"])
        labels, images = [], []
        for batch_images, batch_labels in loader:
            labels.append(batch_labels.numpy())
            images.append(batch_images.numpy())
        np.savez(
            config["out"],
            labels=np.stack(labels),
            images=np.concatenate(images),
            batches_per_epoch=data.batches_per_epoch(2),
            rank=dist.get_rank(),
        )
        dist.barrier()  # both ranks finished their epoch, as a training step's all-reduce would require
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(json.loads(sys.argv[1]))
