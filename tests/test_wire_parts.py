"""Batch frames with parts (a batch's masks, boxes and keypoints after its images): the writer and the reader of
the contract against each other, the alignment that lets a reader view them in place, and the shared memory a
DataLoader worker reads them into."""

from __future__ import annotations

import io

import numpy as np
import pytest
from augserve_client.protocol.errors import ProtocolError
from augserve_client.protocol.targets import BatchTargets
from augserve_client.protocol.wire import PART_ALIGN, batch_array, batch_frame, batch_parts, frame, read_frames

IMAGES = np.arange(3 * 5 * 7 * 3, dtype=np.uint8).reshape(3, 5, 7, 3)  # 315 bytes: the next part must be padded
TARGETS = BatchTargets(
    masks=np.arange(3 * 5 * 7, dtype=np.uint8).reshape(3, 5, 7),
    boxes=[np.array([[1.0, 2.0, 3.0, 4.5]]), np.zeros((0, 4)), np.array([[0, 0, 7, 5], [2, 2, 3, 3.25]])],
    box_labels=[np.array([7]), np.array([], np.int64), np.array([1, 2])],
    keypoints=[np.zeros((0, 2)), np.array([[1.5, 2.5]]), np.zeros((0, 2))],
    keypoint_labels=None,
)


def stream(targets: BatchTargets, images: np.ndarray = IMAGES) -> bytes:
    buffers = [*batch_frame(images, parts=targets.parts(), batch=0, labels=[0] * len(images)), *frame({"kind": "end"})]
    return b"".join(bytes(buffer) for buffer in buffers)


def test_targets_read_back_as_they_were_written() -> None:
    (header, payload), _ = read_frames(io.BytesIO(stream(TARGETS)))
    assert batch_array(header, payload).tobytes() == IMAGES.tobytes()
    read = BatchTargets.from_parts(batch_parts(header, payload))
    assert read is not None and read.keypoint_labels is None
    assert np.array_equal(read.masks, TARGETS.masks)
    for name in ("boxes", "box_labels", "keypoints"):
        written, got = getattr(TARGETS, name), getattr(read, name)
        assert len(got) == 3 and all(np.array_equal(a, b) for a, b in zip(written, got, strict=True)), name
    assert read.boxes[0].dtype == np.float32 and read.box_labels[0].dtype == np.int64


def test_every_part_starts_aligned_and_is_a_view_on_the_payload() -> None:
    (header, payload), _ = read_frames(io.BytesIO(stream(TARGETS)))
    base = payload.ctypes.data
    for name, array in batch_parts(header, payload).items():
        assert (array.ctypes.data - base) % PART_ALIGN == 0, name
        assert np.shares_memory(array, payload), name


def test_a_frame_without_parts_has_no_targets_and_reads_as_before() -> None:
    data = b"".join(bytes(b) for b in [*batch_frame(IMAGES, batch=0), *frame({"kind": "end"})])
    (header, payload), _ = read_frames(io.BytesIO(data))
    assert "parts" not in header and BatchTargets.from_parts(batch_parts(header, payload)) is None


def test_a_part_past_the_payload_is_a_protocol_error() -> None:
    (header, payload), _ = read_frames(io.BytesIO(stream(TARGETS)))
    header["parts"][-1][2] = [10_000, 2]
    with pytest.raises(ProtocolError, match="reaches past"):
        batch_parts(header, payload)


def test_an_encoded_frame_refuses_parts() -> None:
    with pytest.raises(ValueError, match="no parts"):
        batch_frame(IMAGES, encoding="zstd", parts=TARGETS.parts())


def test_masks_stay_in_the_shared_memory_a_worker_read_them_into() -> None:
    torch = pytest.importorskip("torch")
    from augserve_client.tensors import as_tensor, shared_bytes

    (header, payload), _ = read_frames(io.BytesIO(stream(TARGETS)), shared_bytes)
    masks = batch_parts(header, payload)["masks"]
    tensor = as_tensor(masks)
    assert tensor.is_shared() and tensor.data_ptr() == masks.ctypes.data  # DataLoader passes it on uncopied
    assert torch.equal(tensor, torch.from_numpy(TARGETS.masks))
