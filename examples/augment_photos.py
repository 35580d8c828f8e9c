"""Augment the sample photos through a running augserve and save the variants as PNG files.

python examples/augment_photos.py [--url http://127.0.0.1:8000] [--out variants]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from augserve_client import Client, Crop, Reflect, Rotate, Shift, Spec

PHOTOS = sorted((Path(__file__).parent / "photos").glob("*.jpg"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=Path("variants"))
    args = parser.parse_args()

    spec = Spec(
        ops=[
            Reflect(horizontal=True, p=0.5),
            Rotate(angle=(-15, 15), p=0.5),
            Crop(mode="random_resized", size=(224, 224), scale=(0.5, 1.0)),
            Shift(x=(-0.1, 0.1), y=(-0.1, 0.1), p=0.5),
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    with Client(args.url) as client:
        variants = client.augment(PHOTOS, spec, variants=4)  # raw npy on the wire: no decoding here
        for variant in variants:
            image: np.ndarray = variant.image  # 224x224x3 uint8 RGB
            applied = ", ".join(step["op"] for step in variant.meta["applied"])
            print(f"{variant.meta['key']}  seed={variant.seed}  {image.shape}  applied: {applied or 'nothing'}")
            save_png(image, args.out / f"{variant.meta['key']}.png")
        print(f"replay this call with seed={variants.seed}")


def save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image  # the server extra brings Pillow; the bare client does not need it

    Image.fromarray(image).save(path)


if __name__ == "__main__":
    main()
