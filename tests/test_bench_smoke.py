"""The benchmarks' smoke run (``make bench-smoke``): every section still runs and reaches every output.

Only the shape of the results is checked, never a timing: on a shared 2-core machine the numbers of a
16-image run mean nothing, and the real run (``make bench``) is not a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# ~110 s on a quiet 2-core machine, most of it starting 8 servers; the suite's 120 s per test is too tight when
# the machine is shared.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]
ROOT = Path(__file__).resolve().parent.parent
SECTIONS = (
    *("machine", "config", "limit", "transport", "service", "peer", "ours"),
    *("latency", "formats", "encodings", "memory", "rows", "targets"),
    *("limit_cold", "cold", "decoders", "cold_rows"),
    *("target_costs", "replicas", "pinned"),
)
ALONE = ("targets", "replicas", "pinned")  # the sections that also run alone, and write their own files
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RAW_NPY_BYTES = 224 * 224 * 3 + 128  # the pixels and numpy's 128-byte header


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "results"
    completed = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def results(smoke: Path) -> dict:
    return json.loads((smoke / "results.json").read_text())


def test_every_section_is_in_the_json(results: dict) -> None:
    assert set(SECTIONS) <= results.keys()
    assert results["config"]["smoke"] is True
    assert results["machine"]["cores"] >= 1 and results["machine"]["python"]
    assert set(results["limit"]) == {"processes_1", "processes_2", "plain_processes_2"}
    assert {"workers_1", "workers_2"} <= results["service"]["epoch"].keys()
    assert {"workers_1", "workers_2"} <= results["service"]["augment"].keys()
    assert {"workers_1", "workers_2"} <= results["ours"].keys()
    assert set(results["latency"]) == {"first_batch", "clients_1", "clients_8"}
    assert set(results["formats"]) == {"npy", "jpeg", "png", "webp"}


def test_the_cold_path_has_its_rows_split_by_stage(results: dict) -> None:
    """LIMIT_COLD (decode + engine, 1 and 2 processes, and fast), SERVICE_COLD and OURS_COLD on a server whose
    cache holds 5% of the set (the smoke run's one cold server: fast decode with the disk tier)."""
    assert set(results["limit_cold"]) == {"processes_1", "processes_2", "fast_processes_2"}
    assert set(results["cold"]["epoch"]) == set(results["cold"]["ours"]) == {"workers_1_fast_disk"}
    names = [row["configuration"] for row in results["cold_rows"]]
    for prefix, count in (("LIMIT_COLD", 3), ("SERVICE_COLD", 1), ("OURS_COLD", 1)):
        assert sum(name.startswith(prefix) for name in names) == count
    for row in results["cold_rows"]:
        assert row["variants_per_s"] > 0 and row["vs_peer"] > 0
        assert row["decode_ms_per_variant"] >= 0 and row["augment_ms_per_variant"] > 0
    for row in results["cold_rows"][:3]:
        assert row["decode_ms_per_variant"] > 0 and row["transport_ms_per_variant"] is None
    for row in results["cold_rows"][3:]:  # measured (a smoke window is too short to show it above 0 for sure)
        assert row["transport_ms_per_variant"] is not None and row["transport_ms_per_variant"] >= 0
    targets = {check["target"] for check in results["targets"]}
    assert any(name.startswith("OURS_COLD/PEER") for name in targets)
    assert any(name.startswith("SERVICE_COLD/LIMIT_COLD") for name in targets)


def test_the_decoders_are_compared(results: dict) -> None:
    speed, fast = results["decoders"]["speed"], results["decoders"]["fast_vs_exact"]
    for name in ("pillow", "simplejpeg", "simplejpeg_fast"):
        assert speed[name]["cpu_ms_per_image"] > 0 and speed[name]["threads_2_speedup"] > 0
    assert sum(fast["share_by_scale"].values()) == pytest.approx(1, abs=0.01)
    assert fast["decodes"]["count"] == results["config"]["samples"] and fast["variants"]["count"] > 0
    assert 20 < fast["variants"]["psnr_db_median"] < float("inf")  # close to exact, and not exact


def test_the_encodings_are_measured(results: dict) -> None:
    encodings = results["encodings"]
    assert {"rates", "codecs", "links", "levels", "zstd_level"} <= encodings.keys()
    assert "raw" in encodings["rates"] and len(encodings["rates"]) >= 2
    for summary in encodings["rates"].values():
        assert summary["variants_per_s"] > 0 and summary["bytes_per_variant"] > 0
        assert summary["identical"] or summary["psnr_db"] > 20
    assert encodings["rates"]["raw"]["identical"]
    assert encodings["codecs"].keys() == encodings["rates"].keys()
    assert encodings["levels"] and all(level["ratio"] > 1 for level in encodings["levels"])


def test_every_rate_counts_variants_and_cpu(results: dict) -> None:
    rates = [
        *results["limit"].values(),
        *results["service"]["epoch"].values(),
        *results["service"]["augment"].values(),
        *results["ours"].values(),
        results["peer"],
        *results["formats"].values(),
    ]
    for rate in rates:
        assert rate["variants"] > 0 and rate["variants_per_s"] > 0 and rate["client_cpu_s"] >= 0
    for rate in (*results["service"]["epoch"].values(), *results["ours"].values()):
        assert rate["server_cpu_s"] >= 0 and "server_pool_ms_per_variant" in rate


def test_the_replicas_are_compared_side_by_side(results: dict) -> None:
    """One replica, two through the client's list, two behind nginx (where nginx is installed), each replica
    pinned to a core of its own; the ratios come from the same run."""
    replicas = results["replicas"]
    measured = ("one", "list", "nginx") if replicas["nginx_measured"] else ("one", "list")
    for name in measured:
        assert replicas[name]["variants_per_s"] > 0 and replicas[name]["server_cpu_s"] >= 0
        assert len(replicas[name]["windows_per_s"]) == results["config"]["repeats"]
    assert replicas["list_vs_one"] > 0
    assert (replicas["list_vs_nginx"] is not None) == replicas["nginx_measured"]
    if replicas["nginx_measured"]:
        assert "server_nginx_ms_per_variant" in replicas["nginx"]
    pinned = [replicas["cores"]["replica_0"], replicas["cores"]["replica_1"]]
    assert all(len(cores) == 1 for cores in pinned)
    assert pinned[0] != pinned[1] or results["machine"]["cores"] == 1


def test_service_and_limit_share_one_pinned_core(results: dict) -> None:
    pinned = results["pinned"]
    assert pinned["limit"]["variants_per_s"] > 0 and pinned["service"]["variants_per_s"] > 0
    assert pinned["service_vs_limit"] > 0 and isinstance(pinned["met"], bool)
    assert pinned["cores"]["server"] == pinned["cores"]["limit"] and len(pinned["cores"]["server"]) == 1
    assert "server_loop_ms_per_variant" in pinned["service"]
    assert any(check["target"].startswith("SERVICE/LIMIT per core") for check in results["targets"])


def test_target_costs_are_against_the_image_alone(results: dict) -> None:
    costs = results["target_costs"]
    assert set(costs["vs_image"]) == {"image", "mask", "boxes", "keypoints", "all"}
    assert costs["vs_image"]["image"] == 1 and all(value > 0 for value in costs["us_per_variant"].values())


def test_the_sections_that_run_alone_get_their_own_files(smoke: Path) -> None:
    results = (smoke / "results.md").read_text()
    for name in ALONE:
        section = json.loads((smoke / f"{name}.json").read_text())
        assert section["machine"]["cpu"] and (smoke / f"{name}.md").read_text().startswith("# augserve benchmark")
    for heading in ("## What masks, boxes and keypoints cost", "## Two replicas", "## SERVICE/LIMIT per core"):
        assert heading in results


def test_the_transport_floor_counts_both_ends(results: dict) -> None:
    floor = results["transport"]
    assert floor["variants"] > 0 and floor["gb_per_s"] > 0 and floor["server_cpu_s"] > 0
    ends = floor["client_ms_per_variant"] + floor["server_ms_per_variant"]  # each rounded to 0.001
    assert floor["ms_per_variant"] == pytest.approx(ends, abs=2e-3)


def test_formats_report_bytes_per_variant(results: dict) -> None:
    formats = results["formats"]
    assert formats["npy"]["bytes_per_variant"] == RAW_NPY_BYTES
    for fmt in ("jpeg", "png", "webp"):
        assert 0 < formats[fmt]["bytes_per_variant"] < RAW_NPY_BYTES


def test_memory_is_read_after_every_epoch(results: dict) -> None:
    memory = results["memory"]
    assert len(memory["rss_after_epoch_mib"]) == memory["epochs"] == results["config"]["memory_epochs"]
    assert memory["peak_rss_mib"] >= max(memory["rss_after_epoch_mib"]) * 0.99
    assert isinstance(memory["flat"], bool)


def test_targets_and_rows_cover_every_configuration(results: dict) -> None:
    names = [row["configuration"] for row in results["rows"]]
    assert sum(name.startswith("LIMIT") for name in names) == 3  # engine x1, x2; plain albumentations x2
    assert any(name.startswith("PEER") for name in names) and any(name.startswith("OURS") for name in names)
    assert all(row["vs_limit"] > 0 and row["vs_peer"] > 0 for row in results["rows"])
    assert len(results["targets"]) >= 5
    assert all({"target", "measured", "goal", "met"} <= check.keys() for check in results["targets"])


def test_markdown_has_every_table_and_the_machine(smoke: Path, results: dict) -> None:
    text = (smoke / "results.md").read_text()
    headings = ("| configuration |", "CPU per variant", "Transport floor", "| target |", "| output format", "| latency")
    for heading in (*headings, "memory", "## The cold path", "| decoder", "| wire encoding"):
        assert heading in text
    assert results["machine"]["cpu"] in text
    for row in results["rows"] + results["cold_rows"]:
        assert row["configuration"] in text


def test_the_plot_is_a_png(smoke: Path) -> None:
    data = (smoke / "throughput.png").read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
