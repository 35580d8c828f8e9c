"""Train a tiny CNN on freshly augmented batches streamed from augserve.

    python examples/train_cnn.py --url http://127.0.0.1:8000 --folder path/to/imagefolder [--epochs 2]

The folder is an ImageFolder (folder/<class>/<image>). It is uploaded once (only files the server lacks),
then every epoch streams new variants of every image into a DataLoader with two workers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from augserve_client.torch_dataset import AugmentedDataset
from torch import nn
from torch.utils.data import DataLoader

SPEC = {
    "ops": [
        {"op": "reflect", "horizontal": True, "p": 0.5},
        {"op": "rotate", "angle": [-15, 15], "p": 0.5},
        {"op": "crop", "mode": "random_resized", "size": [64, 64], "scale": [0.5, 1.0]},
        {"op": "shift", "x": [-0.1, 0.1], "y": [-0.1, 0.1], "p": 0.5},
    ],
    "output": {"format": "npy"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    dataset = AugmentedDataset(
        args.url,
        args.folder,
        SPEC,
        batch_size=16,
        seed=0,
        output="float",
        mean=[0.485, 0.456, 0.406],
        std=[0.229, 0.224, 0.225],
    )
    loader = DataLoader(dataset, batch_size=None, num_workers=2)  # the server already batches
    classes = len({path.parent.name for path in args.folder.glob("*/*")})
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, classes),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for epoch in range(args.epochs):
        dataset.set_epoch(epoch)  # new order, new variants
        for step, (images, labels) in enumerate(loader):
            loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % 10 == 0:
                print(f"epoch {epoch} step {step} loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
