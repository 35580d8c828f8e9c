"""PEER and OURS: the same training-loop shape, DataLoader(num_workers=2), with and without the service.

PEER is what a trainer writes without us: a map-style Dataset over the JPEG folder that decodes with PIL and
augments with albumentations in the DataLoader workers, batch 32, collated to a uint8 tensor. It is given the
same courtesy the service takes for itself (OpenCV at one thread per worker), so the comparison is with a
well-configured peer, not a strawman. OURS is ``DataLoader(AugmentedDataset(...), batch_size=None,
num_workers=2)`` against a warm server. Both yield (N, 3, 224, 224) uint8 images and int64 labels.

Both loaders keep their workers across epochs (``persistent_workers=True``, as a trainer who cares about input
speed sets it): forking two workers that hold torch costs tens of ms per epoch on either side, which is not what
is compared here. ``AugmentedDataset.set_epoch`` reaches persistent workers through shared memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .common import SEED, SPEC, Config, Rate, measure, timed
from .limit import plain_transform
from .serving import CLIENT_TIMEOUT, BenchServer, SpreadSampler

WORKERS = 2


class JpegFolder(Dataset):
    """Map-style: index -> (augmented HxWx3 uint8 array, label), decoding the JPEG every time."""

    def __init__(self, files: list[Path], labels: list[int]) -> None:
        self.files, self.labels = files, labels
        self.transform = plain_transform()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        with Image.open(self.files[index]) as image:
            array = np.asarray(image.convert("RGB"))
        return self.transform(image=array)["image"], self.labels[index]


def collate(samples: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(np.stack([image for image, _ in samples])).permute(0, 3, 1, 2)
    return images, torch.tensor([label for _, label in samples], dtype=torch.int64)


def _one_cv2_thread(_: int) -> None:
    cv2.setNumThreads(1)


def drain(loader: DataLoader) -> int:
    count = 0
    for images, _ in loader:
        assert images.dtype == torch.uint8 and images.shape[1:] == (3, 224, 224)
        count += images.shape[0]
    return count


def peer_rate(files: list[Path], labels: list[int], config: Config) -> dict[str, Any]:
    torch.manual_seed(SEED)
    loader = DataLoader(
        JpegFolder(files, labels),
        batch_size=config.batch_size,
        shuffle=True,
        num_workers=WORKERS,
        collate_fn=collate,
        worker_init_fn=_one_cv2_thread,
        persistent_workers=True,
    )
    drain(loader)  # warm-up epoch: page cache, imports in the workers' parent
    return timed(lambda: _epochs(loader, config), config)


def _epochs(loader: DataLoader, config: Config) -> Rate:
    return measure(lambda: sum(drain(loader) for _ in range(config.epochs)))


def ours_rate(server: BenchServer, dataset: str, config: Config) -> dict[str, Any]:
    """AugmentedDataset in DataLoader workers (each worker streams its own shard) against a warm server."""
    from augserve_client.torch_dataset import AugmentedDataset

    augmented = AugmentedDataset(server.url, dataset, SPEC, config.batch_size, SEED, timeout=CLIENT_TIMEOUT)
    loader = DataLoader(augmented, batch_size=None, num_workers=WORKERS, persistent_workers=True)
    epoch = 0

    def next_epochs() -> int:
        nonlocal epoch
        count = 0
        for _ in range(config.epochs):
            epoch += 1
            augmented.set_epoch(epoch)
            count += drain(loader)
        return count

    drain(loader)  # epoch 0: the caches were warmed by SERVICE already; this warms the loader path

    def window() -> Rate:
        with SpreadSampler(server) as spread:
            rate = measure(next_epochs, server)
        rate.extra["spread_share"] = spread.share  # of samples with every server worker serving a stream
        return rate

    return timed(window, config)
