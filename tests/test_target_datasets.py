"""Datasets with targets against a real server: segmentation folders and COCO sets, on the server and uploaded;
epoch frames carry masks, boxes and keypoints moved with their images (checked by effect on painted photos),
exactly once over shards, the same for the same seed, resumed from any batch, and replayed byte for byte; bad
annotations are 422s at registration, naming the file and the annotation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from augserve.devserver import ServerProcess
from augserve_client import Client, ConflictError, InvalidImageError, InvalidRequestError, LimitExceededError
from augserve_client.epoch_batches import EpochBatch
from augserve_client.protocol.targets import ImageTargets
from augserve_client.uploads import upload_files
from painted_scene import CLASS, MARKER_AT, OBJECT_BOX, inside_some_box, mask_agreement, painted, painted_core
from PIL import Image

pytestmark = pytest.mark.slow
SPEC = {
    "ops": [
        {"op": "reflect", "horizontal": True, "vertical": True, "p": 0.5},
        {"op": "rotate", "angle": [-30, 30], "p": 0.7},
        {"op": "crop", "mode": "random_resized", "size": [96, 96], "scale": [0.5, 1.0]},
    ],
    "output": {"format": "npy"},
}
SCENES = 6
CATEGORY = 3


def scenes(photos: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Six painted photos (different crops of the two sample photos), with their masks."""
    out = []
    for index in range(SCENES):
        photo = photos[index % 2]
        y, x = 20 * index, 30 * index
        scene = painted(np.ascontiguousarray(photo[y : y + 300, x : x + 360]))
        out.append((scene.image, scene.mask))
    return out


def write_segmentation(folder: Path, pairs: list[tuple[np.ndarray, np.ndarray]]) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for index, (image, mask) in enumerate(pairs):
        Image.fromarray(image).save(folder / "images" / f"{index:03d}.png")
        Image.fromarray(mask).save(folder / "masks" / f"{index:03d}.png")
    return folder


def coco_document(count: int, **changes: object) -> dict[str, object]:
    x_min, y_min, x_max, y_max = OBJECT_BOX
    document: dict[str, object] = {
        "images": [{"id": 100 + i, "file_name": f"{i:03d}.png", "height": 200, "width": 240} for i in range(count)],
        "annotations": [
            {
                "id": i,
                "image_id": 100 + i,
                "category_id": CATEGORY,
                "bbox": [x_min, y_min, x_max - x_min, y_max - y_min],
            }
            for i in range(count)
        ],
        "categories": [{"id": CATEGORY, "name": "magenta square"}],
    }
    document.update(changes)
    return document


def write_coco(folder: Path, pairs: list[tuple[np.ndarray, np.ndarray]], **changes: object) -> Path:
    folder.mkdir(parents=True)
    for index, (image, _) in enumerate(pairs):
        Image.fromarray(image).save(folder / f"{index:03d}.png")
    (folder / "instances_train.json").write_text(json.dumps(coco_document(len(pairs), **changes)))
    return folder


@pytest.fixture(scope="module")
def painted_pairs(photos: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    return scenes(photos)


@pytest.fixture(scope="module")
def folders(data_root: Path, painted_pairs: list[tuple[np.ndarray, np.ndarray]]) -> Path:
    """``targets/seg`` and ``targets/coco`` under the server's data root."""
    base = data_root / "targets"
    if base.exists():
        shutil.rmtree(base)
    write_segmentation(base / "seg", painted_pairs)
    write_coco(base / "coco", painted_pairs)
    return base


@pytest.fixture(scope="module")
def seg(dataset_server: ServerProcess, folders: Path) -> str:
    """``targets/seg`` registered as ``seg`` (registering it again is a no-op)."""
    with Client(dataset_server.url) as client:
        return client.register_folder("seg", "targets/seg", layout="segmentation")["name"]


def all_batches(client: Client, dataset: str, **request: object) -> list[EpochBatch]:
    return list(client.epoch(dataset, SPEC, batch_size=4, **request))


def samples(batches: list[EpochBatch]) -> list[tuple[int, np.ndarray, EpochBatch, int]]:
    """(dataset index, image, its batch, its slot) of every real (not padding) sample."""
    return [
        (int(index), batch.images[slot], batch, slot)
        for batch in batches
        for slot, index in enumerate(batch.indices[: len(batch.indices) - batch.padding])
    ]


def test_a_segmentation_folder_streams_masks_that_cover_the_painted_object(
    dataset_server: ServerProcess, seg: str
) -> None:
    with Client(dataset_server.url) as client:
        summary = client.describe(seg)
        assert summary["count"] == SCENES and summary["layout"] == "segmentation" and summary["targets"] == ["masks"]
        batches = all_batches(client, "seg", seed=3)
        assert [b.targets.masks.shape for b in batches if b.targets] == [(4, 96, 96), (2, 96, 96)]
        for index, image, batch, slot in samples(batches):
            assert batch.targets is not None and batch.targets.boxes is None
            assert mask_agreement(image, batch.targets.masks[slot]) >= 0.99, index


def test_an_uploaded_segmentation_folder_streams_the_same_masks(
    dataset_server: ServerProcess, folders: Path, seg: str
) -> None:
    with Client(dataset_server.url) as client:
        summary = client.upload_folder(None, folders / "seg", progress=False)  # the layout is told from the folder
        assert summary["kind"] == "upload" and summary["targets"] == ["masks"]
        uploaded = samples(all_batches(client, summary["name"], seed=3))
        on_server = samples(all_batches(client, seg, seed=3))
        for (index, image, batch, slot), (_, same, other, other_slot) in zip(uploaded, on_server, strict=True):
            assert np.array_equal(image, same), index  # same files, same order, same seed: same bytes
            assert np.array_equal(batch.targets.masks[slot], other.targets.masks[other_slot])


@pytest.mark.parametrize("where", ["server", "upload"])
def test_a_coco_set_streams_boxes_that_hold_the_painted_object(
    dataset_server: ServerProcess, folders: Path, where: str
) -> None:
    with Client(dataset_server.url) as client:
        if where == "server":
            summary = client.register_folder("coco", "targets/coco", layout="coco")
        else:
            summary = client.upload_folder(None, folders / "coco", progress=False)
        assert summary["targets"] == ["boxes"] and summary["categories"] == {str(CATEGORY): "magenta square"}
        shown = 0
        for index, image, batch, slot in samples(all_batches(client, summary["name"], seed=5)):
            assert batch.targets is not None and batch.targets.masks is None
            boxes, labels = batch.targets.boxes[slot], batch.targets.box_labels[slot]
            assert boxes.dtype == np.float32 and list(labels) == [CATEGORY] * len(boxes)
            core = painted_core(image)
            assert inside_some_box(core, boxes.tolist()), index  # every painted pixel lies in the box
            shown += len(core) > 0
        assert shown >= SCENES // 2  # the crops keep the object in view often enough for the check to bite


def test_uploaded_keypoints_land_on_their_marker(
    dataset_server: ServerProcess, painted_pairs: list[tuple[np.ndarray, np.ndarray]], tmp_path: Path
) -> None:
    files = []
    for index, (image, _) in enumerate(painted_pairs):
        files.append(tmp_path / f"{index}.png")
        Image.fromarray(image).save(files[-1])
    targets = [
        ImageTargets(boxes=[list(OBJECT_BOX)], labels=["square"], keypoints=[MARKER_AT], keypoint_labels=["dot"])
        for _ in files
    ]
    with Client(dataset_server.url) as client:
        summary = upload_files(client, None, files, progress=False, targets=targets)
        assert summary["targets"] == ["boxes", "keypoints"] and summary["categories"] == {"0": "dot", "1": "square"}
        for index, image, batch, slot in samples(all_batches(client, summary["name"], seed=9)):
            targets_of = batch.targets
            assert targets_of is not None and list(targets_of.box_labels[slot]) in ([1], [])
            for point in targets_of.keypoints[slot]:
                ys, xs = np.nonzero(np.linalg.norm(image.astype(float) - [0, 255, 255], axis=-1) < 60)
                assert len(xs) and np.hypot(xs - point[0], ys - point[1]).min() <= 3.0, index
            assert list(targets_of.keypoint_labels[slot]) in ([0], [])


def test_targets_are_exactly_once_over_shards_the_same_per_seed_and_resumable(
    dataset_server: ServerProcess, seg: str
) -> None:
    with Client(dataset_server.url) as client:
        whole = all_batches(client, "seg", seed=11, epoch=2)
        shards = [all_batches(client, "seg", seed=11, epoch=2, shard_index=i, shard_count=2) for i in range(2)]
        indices = sorted(index for shard in shards for index, *_ in samples(shard))
        assert indices == list(range(SCENES))
        again = all_batches(client, "seg", seed=11, epoch=2)
        resumed = all_batches(client, "seg", seed=11, epoch=2, start_batch=1)
        for first, second in zip(whole, again, strict=True):
            assert first.images.tobytes() == second.images.tobytes()
            assert first.targets.masks.tobytes() == second.targets.masks.tobytes()
        assert resumed[0].targets.masks.tobytes() == whole[1].targets.masks.tobytes()
        other = all_batches(client, "seg", seed=11, epoch=3)
        assert other[0].targets.masks.tobytes() != whole[0].targets.masks.tobytes()


def test_a_replayed_sample_carries_the_targets_the_stream_carried(
    dataset_server: ServerProcess, folders: Path, seg: str
) -> None:
    with Client(dataset_server.url) as client:
        for index, image, batch, slot in samples(all_batches(client, "seg", seed=4, epoch=1)):
            again = client.replay("seg", SPEC, index=index, seed=4, epoch=1)
            assert np.array_equal(again.image, image)
            assert again.mask is not None and np.array_equal(again.mask, batch.targets.masks[slot])
        summary = client.upload_folder(None, folders / "coco", progress=False)
        for index, _, batch, slot in samples(all_batches(client, summary["name"], seed=4)):
            replayed = client.replay(summary["name"], SPEC, index=index, seed=4).boxes
            assert np.allclose(replayed, batch.targets.boxes[slot], atol=1e-3)  # float32 on the wire


def test_an_encoded_stream_of_a_dataset_with_targets_is_refused(dataset_server: ServerProcess, seg: str) -> None:
    with Client(dataset_server.url) as client:
        with pytest.raises(ConflictError) as caught:
            all_batches(client, "seg", encoding="zstd")
        assert caught.value.status == 409 and caught.value.field == "encoding"


def bad_registration(client: Client, name: str, folder: str, layout: str) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        client.register_folder(name, folder, layout=layout)  # type: ignore[arg-type]
    assert caught.value.status == 422 and caught.value.code == "invalid_targets"
    return caught.value


def test_bad_segmentation_folders_are_refused_naming_the_file(
    dataset_server: ServerProcess, data_root: Path, painted_pairs: list[tuple[np.ndarray, np.ndarray]]
) -> None:
    base = data_root / "bad-seg"
    shutil.rmtree(base, ignore_errors=True)
    lonely = write_segmentation(base / "lonely", painted_pairs[:2])
    (lonely / "masks" / "001.png").unlink()
    small = write_segmentation(base / "small", painted_pairs[:2])
    Image.fromarray(painted_pairs[1][1][:50]).save(small / "masks" / "001.png")
    colour = write_segmentation(base / "colour", painted_pairs[:2])
    Image.fromarray(painted_pairs[1][0]).save(colour / "masks" / "001.png")
    with Client(dataset_server.url) as client:
        error = bad_registration(client, "lonely", "bad-seg/lonely", "segmentation")
        assert "images/001.png" in error.message and "no mask" in error.message
        error = bad_registration(client, "small", "bad-seg/small", "segmentation")
        assert (
            "bad-seg/small/masks/001.png" in error.message and "240x50" in error.message and "240x200" in error.message
        )
        with pytest.raises(InvalidImageError) as caught:  # as a colour mask sent to /v1/augment is
            client.register_folder("colour", "bad-seg/colour", layout="segmentation")
        assert caught.value.code == "unsupported_mode" and caught.value.file == "bad-seg/colour/masks/001.png"
        assert "single-channel" in caught.value.message


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"annotations": [{"id": 9, "image_id": 555, "category_id": CATEGORY, "bbox": [1, 1, 5, 5]}]}, "image id 555"),
        ({"annotations": [{"id": 9, "image_id": 100, "category_id": 42, "bbox": [1, 1, 5, 5]}]}, "category_id 42"),
        ({"annotations": [{"id": 9, "image_id": 100, "category_id": CATEGORY, "bbox": [1, 1, 0, 5]}]}, "bbox"),
        ({"annotations": [{"id": 9, "image_id": 101, "category_id": CATEGORY, "bbox": [300, 10, 5, 5]}]}, "outside"),
        (
            {"images": [{"id": 100, "file_name": "nowhere.png", "height": 200, "width": 240}], "annotations": []},
            "nowhere",
        ),
    ],
)
def test_bad_coco_annotations_are_refused_naming_them(
    dataset_server: ServerProcess,
    data_root: Path,
    painted_pairs: list[tuple[np.ndarray, np.ndarray]],
    changes: dict[str, object],
    named: str,
) -> None:
    folder = data_root / "bad-coco" / named.replace(" ", "-")
    shutil.rmtree(folder, ignore_errors=True)
    write_coco(folder, painted_pairs[:2], **changes)
    with Client(dataset_server.url) as client:
        error = bad_registration(client, "bad-coco", str(folder.relative_to(data_root)), "coco")
    assert named in error.message and "instances_train.json" in error.message and error.field


def test_bad_uploaded_targets_are_refused_naming_the_item(
    dataset_server: ServerProcess, painted_pairs: list[tuple[np.ndarray, np.ndarray]], tmp_path: Path
) -> None:
    files, masks = [], []
    for index, (image, mask) in enumerate(painted_pairs[:2]):
        files.append(tmp_path / f"{index}.png")
        masks.append(tmp_path / f"{index}.mask.png")
        Image.fromarray(image).save(files[-1])
        Image.fromarray(mask).save(masks[-1])
    outside = [ImageTargets(), ImageTargets(boxes=[[250, 10, 260, 20]], labels=[1])]
    with Client(dataset_server.url) as client:
        with pytest.raises(InvalidRequestError) as caught:
            upload_files(client, None, files, progress=False, targets=outside)
        assert caught.value.field == "items[1].targets.boxes[0]" and "outside" in caught.value.message
        half = {"name": "half", "items": [{"blob": "0" * 64, "mask": "1" * 64}, {"blob": "2" * 64}]}
        with pytest.raises(InvalidRequestError) as caught:
            client.request("POST", "/v1/datasets", json=half)
        assert "items[1] has no mask while items[0] has one" in caught.value.message


def test_a_dataloader_gets_dict_batches_with_targets(dataset_server: ServerProcess, folders: Path, seg: str) -> None:
    torch = pytest.importorskip("torch")
    from augserve_client.torch_dataset import AugmentedDataset
    from torch.utils.data import DataLoader

    with Client(dataset_server.url) as client:
        coco = client.upload_folder(None, folders / "coco", progress=False)["name"]
    segmentation = AugmentedDataset(dataset_server.url, "seg", SPEC, batch_size=2, seed=1, progress=False)
    seen = []
    for batch in DataLoader(segmentation, batch_size=None, num_workers=2):
        assert set(batch) == {"image", "image_label", "mask"}
        count = len(batch["image"])  # 3 samples per worker: a batch of 2, then 1
        assert batch["image"].shape == (count, 3, 96, 96) and batch["mask"].shape == (count, 96, 96)
        for image, mask in zip(batch["image"], batch["mask"], strict=True):
            assert mask_agreement(image.permute(1, 2, 0).numpy(), mask.numpy()) >= 0.99
            seen.append(int((mask == CLASS).sum()))
    assert len(seen) == SCENES and any(seen)
    detection = AugmentedDataset(dataset_server.url, coco, SPEC, batch_size=4, seed=1, progress=False)
    listed = next(iter(DataLoader(detection, batch_size=None, num_workers=1)))
    assert isinstance(listed["boxes"], list) and all(boxes.shape[1:] == (4,) for boxes in listed["boxes"])
    assert all(labels.dtype == torch.int64 for labels in listed["labels"])
    detection.padded_targets = True
    padded = next(iter(detection))
    assert padded["boxes"].shape == (4, int(padded["box_counts"].max()), 4)
    for row, count, boxes in zip(padded["boxes"], padded["box_counts"], listed["boxes"], strict=True):
        assert torch.equal(row[:count], boxes) and bool((row[count:] == 0).all())


def test_a_coco_file_over_the_limit_is_a_413_naming_it(tmp_path: Path, data_root: Path, folders: Path) -> None:
    size = (folders / "coco" / "instances_train.json").stat().st_size
    server = ServerProcess(tmp_path / "data", data_root=data_root, max_annotation_bytes=size - 1).start()
    try:
        with Client(server.url) as client, pytest.raises(LimitExceededError) as caught:
            client.register_folder("big-coco", "targets/coco", layout="coco")
    finally:
        server.stop()
    error = caught.value
    assert (
        error.status == 413
        and error.file == "instances_train.json"
        and error.details["limit"] == "max_annotation_bytes"
    )
