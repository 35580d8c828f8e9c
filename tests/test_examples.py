"""The examples, run as a user runs them: a subprocess, its own server, its own output directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_the_corner_experiment_small(tmp_path: Path) -> None:
    """At the small size (500 digits, 10 epochs) the augmented model is far from trained: 35-75% off the corner
    in trial runs over seeds, against chance (about 10%) for the plain one. So this asserts the gap with a wide
    margin, and that the plain model learnt the corner it saw, not the full run's numbers."""
    result = subprocess.run(
        [sys.executable, ROOT / "examples" / "corner_experiment.py", "--small", "--out", tmp_path],
        capture_output=True,
        text=True,
        timeout=380,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| top-left (trained) |" in result.stdout and "| centre |" in result.stdout
    with Image.open(tmp_path / "corner_experiment.png") as plot:
        assert plot.width > 600 and plot.height > 300
    summary = json.loads((tmp_path / "corner_experiment.json").read_text())
    plain, augmented = summary["accuracy"]["plain"], summary["accuracy"]["augmented"]
    assert list(plain) == list(augmented) == summary["positions"]
    assert len(summary["positions"]) == 5 and summary["train_digits"] == 500 and summary["test_digits"] == 450
    off_corner = [position for position in summary["positions"] if "trained" not in position]
    assert plain["top-left (trained)"] >= 0.8  # the corner it saw
    assert max(plain[position] for position in off_corner) <= 0.3  # about chance everywhere else
    mean = {name: sum(model[p] for p in off_corner) / len(off_corner) for name, model in summary["accuracy"].items()}
    assert mean["augmented"] >= mean["plain"] + 0.15, summary


def test_the_readme_shows_the_experiment_s_own_spec() -> None:
    """The README quotes the augmented spec; the example is what runs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("corner_experiment", ROOT / "examples" / "corner_experiment.py")
    assert spec is not None and spec.loader is not None
    experiment = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(experiment)
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## The experiment augserve exists for") :]
    quoted = json.loads(section[section.index("```json\n") + 8 : section.index("```", section.index("```json\n") + 8)])
    assert quoted["ops"] == experiment.AUGMENTED_SPEC["ops"]
    assert "](docs/corner_experiment.png)" in section and (ROOT / "docs" / "corner_experiment.png").exists()
