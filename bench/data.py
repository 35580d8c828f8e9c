"""The benchmark's images: real photos, cut and resized to random sizes, written once as JPEG files.

Every contender reads the same files. The peer decodes them with PIL in its DataLoader workers, the service
decodes them once into its cache, and LIMIT gets them pre-decoded by the very decoder the service uses
(``augserve.codecs.decode``), so all three augment identical pixels.

Sources are the photos scikit-learn ships (2) plus scikit-image's bundled photos when it is installed (no
download either way). Sizes are drawn uniformly in 256-640 px per side: a realistic spread of aspect ratios,
with the largest near the 640 px the issue quotes decode costs for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

MIN_SIDE, MAX_SIDE = 256, 640
JPEG_QUALITY = 90
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")


@dataclass(frozen=True)
class Dataset:
    """An ImageFolder on disk (``root/<class>/<file>.jpg``) and its files in ImageFolder order."""

    root: Path
    files: list[Path]
    labels: list[int]

    @property
    def bytes(self) -> int:
        return sum(path.stat().st_size for path in self.files)


def photos() -> list[np.ndarray]:
    """Every bundled real photo available offline, as HxWx3 uint8 RGB."""
    from sklearn.datasets import load_sample_images

    found = [np.asarray(image) for image in load_sample_images().images]
    try:
        import skimage.data
    except ImportError:
        return found
    for name in SKIMAGE_PHOTOS:
        try:
            image = np.asarray(getattr(skimage.data, name)())
        except Exception:  # a photo that would need a download: skip it
            continue
        if image.ndim == 3 and image.shape[2] >= 3:
            found.append(np.ascontiguousarray(image[..., :3]))
    return found


def sample(photo: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A random window of ``photo`` with the aspect of a random 256-640 px size, resized to that size."""
    height, width = (int(side) for side in rng.integers(MIN_SIDE, MAX_SIDE + 1, size=2))
    scale = min(photo.shape[0] / height, photo.shape[1] / width) * rng.uniform(0.6, 1.0)
    crop_h, crop_w = max(1, int(height * scale)), max(1, int(width * scale))
    y = int(rng.integers(0, photo.shape[0] - crop_h + 1))
    x = int(rng.integers(0, photo.shape[1] - crop_w + 1))
    window = Image.fromarray(photo[y : y + crop_h, x : x + crop_w])
    return window.resize((width, height), Image.Resampling.BILINEAR)


def make_dataset(root: Path, count: int, classes: int, seed: int = 0) -> Dataset:
    """Write ``count`` JPEGs into ``classes`` class folders (class = source photo modulo ``classes``)."""
    rng = np.random.default_rng(seed)
    sources = photos()
    files, labels = [], []
    for index in range(count):
        source = index % len(sources)
        label = source % classes
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{index:05d}.jpg"
        sample(sources[source], rng).save(path, quality=JPEG_QUALITY)
        files.append(path)
        labels.append(label)
    # ImageFolder order (sorted class, then sorted file), the order the service's upload_folder registers.
    order = sorted(range(count), key=lambda i: (labels[i], files[i].name))
    return Dataset(root, [files[i] for i in order], [labels[i] for i in order])


def decode_all(dataset: Dataset) -> list[np.ndarray]:
    """The files decoded exactly as the service decodes them (what its cache holds once warm)."""
    from augserve.codecs import decode

    return [decode(path.read_bytes(), path.name, 1 << 40) for path in dataset.files]
