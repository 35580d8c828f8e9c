"""The experiment augserve exists for: a CNN that saw digits in one corner only, trained twice.

    python examples/corner_experiment.py [--url http://127.0.0.1:8000] [--small] [--out DIR] [--seed 0]

Digits (scikit-learn's 8x8 ``load_digits``, scaled up to 16x16) are pasted in the top-left corner of a 40x40
black canvas. The same small CNN, convolutions then Flatten + Linear (no global pooling, so nothing in the
architecture makes it position invariant: it has to learn that), is trained twice from the same initial
weights, on the same batches of the same samples in the same order, for the same number of steps:

- **plain**: the corner images as they are;
- **augmented**: fresh variants of them every epoch, streamed from augserve: shifted anywhere on the canvas
  (0 to 20 pixels right and down) and, half of the time, rotated by at most 10 degrees. No reflection: a
  mirrored 2 or 7 is no longer a 2 or a 7.

Both runs stream from augserve (``AugmentedDataset`` over the folder uploaded once by the client); the plain
run's spec has no ops, so the two runs differ in the spec and nothing else. Then both models classify held-out
digits pasted in every corner and in the centre: the plain one only knows the corner it saw.

Prints the table, and writes ``corner_experiment.png`` (accuracy per position, both models, with what each saw)
and ``corner_experiment.json`` to ``--out``. Needs torch, scikit-learn and matplotlib besides the client (the
``.venv`` of ``make test`` has them all). Without ``--url`` it starts a server of its own on loopback, which
needs the server extra (``pip install 'augserve[server]'``). ``--small`` is the quick version CI runs: fewer
digits and epochs, well under a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from augserve.devserver import served
from augserve_client.torch_dataset import AugmentedDataset
from torch import nn
from torch.utils.data import DataLoader

CANVAS = 40  # pixels, square
DIGIT = 16  # the 8x8 digits, each pixel doubled
MARGIN = 2  # between a digit and the canvas edge
FAR = CANVAS - DIGIT - MARGIN
POSITIONS = {  # (top, left) of the digit; the plain model is trained on the first only
    "top-left (trained)": (MARGIN, MARGIN),
    "top-right": (MARGIN, FAR),
    "bottom-left": (FAR, MARGIN),
    "bottom-right": (FAR, FAR),
    "centre": ((CANVAS - DIGIT) // 2, (CANVAS - DIGIT) // 2),
}
PLAIN_SPEC: dict[str, Any] = {"ops": [], "output": {"format": "npy"}}
AUGMENTED_SPEC: dict[str, Any] = {
    "ops": [
        # Small rotations: a digit turned by 10 degrees is the same digit; by 90, a 6 may become a 9.
        {"op": "rotate", "angle": [-10, 10], "p": 0.5},
        # Large shifts: from the top-left corner to anywhere the digit fits, margins kept.
        {"op": "shift", "x": [0, FAR - MARGIN], "y": [0, FAR - MARGIN], "unit": "pixels", "p": 1.0},
    ],
    "output": {"format": "npy"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running augserve; without it, one is started on loopback")
    parser.add_argument("--small", action="store_true", help="the quick version: fewer samples and epochs")
    parser.add_argument("--out", type=Path, default=Path("."), help="where the plot and the JSON go")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train_count, epochs = (500, 10) if args.small else (None, 30)

    started = time.perf_counter()
    # Half the cores: the other half streams the batches (the server). Small convolutions gain little from more
    # threads, and on 2 cores two torch threads next to the server ran 3-5x slower than one.
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    train_x, train_y, test_x, test_y = split_digits(args.seed, train_count)
    torch.manual_seed(args.seed)
    initial = make_model().state_dict()
    with tempfile.TemporaryDirectory(prefix="corner-digits-") as scratch, served(args.url, Path(scratch)) as url:
        folder = write_image_folder(Path(scratch) / "digits", train_x, train_y)
        results = {}
        for name, spec in (("plain", PLAIN_SPEC), ("augmented", AUGMENTED_SPEC)):
            model, seen, seconds = train(url, folder, spec, initial, epochs, args.seed)
            accuracy = {position: evaluate(model, test_x, test_y, *at) for position, at in POSITIONS.items()}
            results[name] = {"accuracy": accuracy, "seen": seen, "seconds": seconds}
            print(f"{name}: {epochs} epochs of {len(train_y)} digits in {seconds:.0f} s", flush=True)

    table = markdown_table(results)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(results, args.out / "corner_experiment.png")
    summary = {
        "positions": list(POSITIONS),
        "accuracy": {name: result["accuracy"] for name, result in results.items()},
        "train_digits": len(train_y),
        "test_digits": len(test_y),
        "epochs": epochs,
        "seed": args.seed,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (args.out / "corner_experiment.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out / 'corner_experiment.png'} and corner_experiment.json in {summary['seconds']} s")


def split_digits(seed: int, train_count: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified train/held-out split of the 1797 digits, as 16x16 uint8 images (0..16 scaled to 0..255)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.kron(digits.images * (255 / 16), np.ones((2, 2))).round().astype(np.uint8)
    train_x, test_x, train_y, test_y = train_test_split(
        images, digits.target, test_size=0.25, stratify=digits.target, random_state=seed
    )
    if train_count is not None:
        train_x, train_y = train_x[:train_count], train_y[:train_count]
    return train_x, train_y, test_x, test_y


def place(digits: np.ndarray, top: int, left: int) -> np.ndarray:
    """Digits (N, 16, 16) pasted on black canvases (N, 40, 40) with their top-left pixel at (top, left)."""
    canvases = np.zeros((len(digits), CANVAS, CANVAS), np.uint8)
    canvases[:, top : top + DIGIT, left : left + DIGIT] = digits
    return canvases


def write_image_folder(folder: Path, digits: np.ndarray, labels: np.ndarray) -> Path:
    """The training set as an ImageFolder (folder/<digit>/<index>.png), every digit in the top-left corner."""
    from PIL import Image

    for index, (canvas, label) in enumerate(zip(place(digits, MARGIN, MARGIN), labels, strict=True)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(canvas).save(folder / str(label) / f"{index:04d}.png")
    return folder


def make_model() -> nn.Module:
    """Three convolutions with pooling, then one linear layer over the 5x5 grid of their features: a digit in a
    part of the canvas the model never saw lights up weights it never trained."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 20x20
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 10x10
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 5x5
        nn.Flatten(),
        nn.Linear(64 * (CANVAS // 8) ** 2, 10),
    )


def train(
    url: str, folder: Path, spec: dict[str, Any], initial: dict[str, torch.Tensor], epochs: int, seed: int
) -> tuple[nn.Module, np.ndarray, float]:
    """The model trained on ``spec``'s variants of the folder; also the first images it saw, and the seconds."""
    started = time.perf_counter()
    model = make_model()
    model.load_state_dict(initial)
    # A Path is a local ImageFolder: uploaded once (the second run finds every file there), named by content.
    dataset = AugmentedDataset(url, folder, spec, batch_size=32, seed=seed, progress=False)
    loader = DataLoader(dataset, batch_size=None)  # the server already batches
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    seen = np.zeros((0, CANVAS, CANVAS), np.uint8)
    model.train()
    for epoch in range(epochs):
        dataset.set_epoch(epoch)  # a new order and, with ops, new variants of every digit
        for images, labels in loader:
            grey = images[:, :1]  # the PNGs are grey, decoded to RGB: three equal channels
            if not len(seen):
                seen = grey[:8, 0].numpy().copy()
            loss = nn.functional.cross_entropy(model(grey.float() / 255), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval(), seen, time.perf_counter() - started


@torch.no_grad()
def evaluate(model: nn.Module, digits: np.ndarray, labels: np.ndarray, top: int, left: int) -> float:
    images = torch.from_numpy(place(digits, top, left)).unsqueeze(1).float() / 255
    return float((model(images).argmax(1).numpy() == labels).mean())


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    plain, augmented = results["plain"]["accuracy"], results["augmented"]["accuracy"]
    rows = ["| digit position | plain | augmented |", "|---|---:|---:|"]
    rows += [f"| {position} | {plain[position]:.1%} | {augmented[position]:.1%} |" for position in POSITIONS]
    off = [position for position in POSITIONS if "trained" not in position]
    mean = [float(np.mean([accuracy[position] for position in off])) for accuracy in (plain, augmented)]
    rows.append(f"| mean of the four positions never trained on | {mean[0]:.1%} | {mean[1]:.1%} |")
    return "\n".join(rows)


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(11, 4.2), layout="constrained")
    left, right = figure.subfigures(1, 2, width_ratios=[1, 1.5])
    left.suptitle("what each model saw: its first batch")
    tiles = left.subplots(2, 4)
    for row, name in enumerate(("plain", "augmented")):
        for column, axis in enumerate(tiles[row]):
            axis.imshow(results[name]["seen"][column], cmap="gray", vmin=0, vmax=255)
            axis.set_xticks([])
            axis.set_yticks([])
        tiles[row][0].set_ylabel(name)
    axis = right.subplots()
    x = np.arange(len(POSITIONS))
    for offset, name, color in ((-0.2, "plain", "#999999"), (0.2, "augmented", "#1f77b4")):
        heights = [results[name]["accuracy"][position] for position in POSITIONS]
        bars = axis.bar(x + offset, heights, 0.4, label=name, color=color)
        axis.bar_label(bars, [f"{height:.0%}" for height in heights], fontsize=8)
    axis.axhline(0.1, color="black", linestyle=":", linewidth=1, label="chance")
    axis.set_xticks(x, [position.replace(" (", "\n(") for position in POSITIONS])
    axis.set_ylim(0, 1.2)
    axis.set_yticks(np.linspace(0, 1, 6))
    axis.set_ylabel("held-out accuracy")
    axis.set_title("where the held-out digits were pasted")
    axis.legend(loc="upper center", ncol=3, fontsize=8, frameon=False)
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
