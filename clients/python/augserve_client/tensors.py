"""Epoch batches as torch tensors, without copies where DataLoader would make them.

A DataLoader worker reads each batch's payload straight into shared memory (:func:`shared_bytes`), and the
tensors it yields are views of it (:func:`as_tensor`), so DataLoader hands them to the trainer as they are. A
batch of a dataset with targets becomes a dict (:func:`target_batch`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .epoch_batches import EpochBatch


def shared_bytes(size: int) -> np.ndarray:
    """A flat uint8 buffer in shared memory, to read a batch into inside a DataLoader worker.

    DataLoader moves every tensor a worker yields into shared memory, copying it unless it is there already:
    one more pass over every byte of every batch, in the worker. Reading the batch straight into shared memory
    skips it.
    ``_new_shared`` allocates there directly; the public ``share_memory_()`` would copy an empty tensor."""
    storage = torch.UntypedStorage._new_shared(size)
    return torch.empty(0, dtype=torch.uint8).set_(storage).numpy()


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """``array`` as a tensor: the part of the shared-memory tensor it was read into (numpy keeps that as the
    views' base), so it stays shared; otherwise ``torch.from_numpy``."""
    owner: Any = array
    while isinstance(owner, np.ndarray):
        owner = owner.base
    if isinstance(owner, torch.Tensor) and owner.is_shared() and array.dtype == np.uint8 and array.flags.c_contiguous:
        start = array.ctypes.data - owner.data_ptr()  # a batch's masks lie after its images in one payload
        return owner.view(-1)[start : start + array.nbytes].view(array.shape)
    return torch.from_numpy(array)


def target_batch(images: torch.Tensor, batch: EpochBatch, padded: bool = False) -> dict[str, Any]:
    """A batch of a dataset with targets, as a dict: ``image`` (N, C, H, W), ``image_label`` (N,), and the kinds
    the dataset has: ``mask`` (N, H, W) uint8; ``boxes``, a list of N (k_i, 4) float32 tensors in the spec's box
    format, with ``labels``, N (k_i,) int64 tensors; ``keypoints``, N (m_i, 2), with ``keypoint_labels`` when the
    dataset has them. ``padded``: boxes and keypoints as one tensor each, (N, max k_i, 4), padded with zeros
    (labels with -1), and ``box_counts`` / ``keypoint_counts`` (N,) saying how many rows of each are real."""
    targets = batch.targets
    assert targets is not None
    out: dict[str, Any] = {"image": images, "image_label": torch.from_numpy(batch.labels)}
    if targets.masks is not None:
        out["mask"] = as_tensor(targets.masks)
    for rows, labels, name, labels_name, counts in (
        (targets.boxes, targets.box_labels, "boxes", "labels", "box_counts"),
        (targets.keypoints, targets.keypoint_labels, "keypoints", "keypoint_labels", "keypoint_counts"),
    ):
        if rows is None:
            continue
        if padded:
            out[name], out[counts] = _padded(rows, 0.0)
            if labels is not None:
                out[labels_name] = _padded(labels, -1)[0]
        else:
            out[name] = [torch.from_numpy(row) for row in rows]
            if labels is not None:
                out[labels_name] = [torch.from_numpy(row) for row in labels]
    return out


def _padded(rows: list[np.ndarray], fill: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged rows as one (N, longest, ...) tensor filled with ``fill`` past each sample's rows, and the counts."""
    counts = [len(row) for row in rows]
    shape = (len(rows), max(counts, default=0), *rows[0].shape[1:]) if rows else (0, 0)
    padded = np.full(shape, fill, dtype=rows[0].dtype if rows else np.float32)
    for index, row in enumerate(rows):
        padded[index, : len(row)] = row
    return torch.from_numpy(padded), torch.tensor(counts, dtype=torch.int64)
