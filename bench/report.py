"""Turning one run's measurements into results.json, a markdown table with targets, and a bar chart.

Ratios are computed here, from numbers measured in the same run, never against figures from another day.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from . import pinned, replicas
from . import targets as targets_section
from .cold_tables import cold_lines, cold_rows, cold_targets
from .common import cores_cell, ms_cell, write_section

PACKAGES = ("torch", "albumentations", "opencv-python-headless", "numpy", "pillow", "uvicorn", "httpx", "simplejpeg")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    except OSError:
        pass
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30), 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
    }


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The throughput table: one row per configuration, with ratios to LIMIT (2 processes) and to PEER."""
    limit = results["limit"]["processes_2"]["variants_per_s"]
    peer = results["peer"]["variants_per_s"]
    named = [
        ("LIMIT: engine in-process, 1 process", results["limit"]["processes_1"]),
        ("LIMIT: engine in-process, 2 processes", results["limit"]["processes_2"]),
        ("LIMIT: plain albumentations (PEER's transform), 2 processes", results["limit"]["plain_processes_2"]),
    ]
    for kind, label in (("epoch", "epoch stream"), ("augment", "/v1/augment")):
        for key, summary in results["service"][kind].items():
            named.append((f"SERVICE {label}, {_server_label(key)}", summary))
    named.append(("PEER: DataLoader(2 persistent workers), PIL decode + albumentations", results["peer"]))
    for key, summary in results["ours"].items():
        named.append((f"OURS: DataLoader(2 persistent workers) + AugmentedDataset, {_server_label(key)}", summary))
    table = []
    for name, summary in named:
        rate = summary["variants_per_s"]
        table.append(
            {
                "configuration": name,
                "variants_per_s": rate,
                "vs_limit": round(rate / limit, 3),
                "vs_peer": round(rate / peer, 3),
                "client_cores": summary.get("client_cores"),
                "server_cores": summary.get("server_cores"),
                "other_cores": summary.get("other_cores"),
                "client_ms_per_variant": summary.get("client_ms_per_variant"),
                "server_loop_ms_per_variant": summary.get("server_loop_ms_per_variant"),
                "server_pool_ms_per_variant": summary.get("server_pool_ms_per_variant"),
                "server_ms_per_variant": summary.get("server_ms_per_variant"),
            }
        )
    return table


def _server_label(key: str) -> str:
    """``workers_2_threads_1`` -> ``server 2 workers x 1 thread``; threads 0 means the default."""
    parts = key.split("_")
    workers = int(parts[1])
    threads = int(parts[3]) if len(parts) > 3 else 0
    pool = "default threads (cores / workers)" if threads == 0 else f"{threads} thread{'s' * (threads > 1)}"
    return f"server {workers} worker{'s' * (workers > 1)} x {pool}"


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    limit = results["limit"]["processes_2"]["variants_per_s"]
    epoch, augment = results["service"]["epoch"], results["service"]["augment"]
    best_epoch = max(epoch, key=lambda key: epoch[key]["variants_per_s"])
    ours = results["ours"]["workers_1"]["variants_per_s"]
    memory, first = results["memory"], results["latency"]["first_batch"]
    checks = [
        ("SERVICE/LIMIT, raw, epoch stream, 1 worker", epoch["workers_1"]["variants_per_s"] / limit, ">= 0.90"),
        (
            f"SERVICE/LIMIT, raw, epoch stream, best ({best_epoch})",
            epoch[best_epoch]["variants_per_s"] / limit,
            ">= 0.90",
        ),
        ("SERVICE/LIMIT, raw, /v1/augment, 1 worker", augment["workers_1"]["variants_per_s"] / limit, ">= 0.90"),
        ("OURS/PEER (1-worker server)", ours / results["peer"]["variants_per_s"], ">= 1.5"),
        ("2 workers / 1 worker, epoch stream", _scale(epoch, "workers_2", "workers_1"), ">= 1.8"),
        (
            "2 workers / 1 worker, epoch stream, 1 thread each",
            _scale(epoch, "workers_2_threads_1", "workers_1_threads_1"),
            ">= 1.8",
        ),
        ("2 workers / 1 worker, /v1/augment", _scale(augment, "workers_2", "workers_1"), ">= 1.8"),
        (f"time to first batch of {first['batch_size']}, warm (median, ms)", first["median_ms"], "< 50"),
        ("server RSS after warm-up, max deviation (%)", memory["max_deviation_pct"], "<= 5"),
        (
            "SERVICE/LIMIT per core: server pinned to one core, client on the other, epoch stream",
            results["pinned"]["service_vs_limit"],
            ">= 0.90",
        ),
        *cold_targets(results),
    ]
    return [
        {
            "target": name,
            "measured": None if value is None else round(value, 3),
            "goal": goal,
            "met": _meets(value, goal),
        }
        for name, value, goal in checks
    ]


def _scale(group: dict[str, Any], numerator: str, denominator: str) -> float | None:
    """A ratio of two configurations, or None when one was not measured (smoke runs skip some)."""
    if numerator not in group or denominator not in group:
        return None
    return group[numerator]["variants_per_s"] / group[denominator]["variants_per_s"]


def _meets(value: float | None, goal: str) -> bool | None:
    if value is None:
        return None
    operator, threshold = goal.split()
    return {">=": value >= float(threshold), "<": value < float(threshold), "<=": value <= float(threshold)}[operator]


def markdown(results: dict[str, Any]) -> str:
    info = results["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in info["packages"].items() if version)
    lines = [
        "# augserve benchmark",
        "",
        f"Measured {info['date']} on {info['cpu']}, {info['cores']} cores shared by client and server, "
        f"{info['memory_gib']} GiB; Python {info['python']}; {versions}.",
        f"{results['config']['samples']} JPEGs (256-640 px, real photos), spec: reflect h p=0.5, rotate +-15 p=0.5, "
        "random resized crop 224x224, shift +-10% p=0.5; raw uint8 output unless stated. "
        "Median of the timed windows; ratios from this run.",
        "",
        "| configuration | variants/s | vs LIMIT (2 proc) | vs PEER | client cores | server cores | other cores |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        cores = " | ".join(cores_cell(row[f"{side}_cores"]) for side in ("client", "server", "other"))
        lines.append(
            f"| {row['configuration']} | {row['variants_per_s']:.0f} | {row['vs_limit']:.2f} | {row['vs_peer']:.2f} "
            f"| {cores} |"
        )
    lines += [
        "",
        "CPU per variant (ms): for LIMIT the engine itself; for the rest the client (with DataLoader workers), the "
        "server's event-loop threads, its augmentation pools, and the whole server tree.",
        "",
        "| configuration | client | server loop | server pool | server total |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        cells = [row[f"{key}_ms_per_variant"] for key in ("client", "server_loop", "server_pool", "server")]
        lines.append(f"| {row['configuration']} | " + " | ".join(ms_cell(cell) for cell in cells) + " |")
    epoch = results["service"]["epoch"]["workers_1"]
    engine = results["limit"]["processes_2"]["client_ms_per_variant"]
    plain = results["limit"]["plain_processes_2"]["client_ms_per_variant"]
    lines += [
        "",
        f"Client share: during SERVICE epoch streaming (1 worker) the client used {epoch['client_cores']:.2f} cores, "
        f"{100 * epoch['client_cpu_share']:.0f}% of the CPU client and server used together; the server spent "
        f"{epoch['server_loop_ms_per_variant']:.3f} ms per variant on its event loop and "
        f"{epoch['server_pool_ms_per_variant']:.3f} ms in its pool, against {engine:.3f} ms for the engine in LIMIT.",
        "",
        "The engine resamples the flip and rotation once, in the crop (augserve.engine.transforms), and warps RGB "
        f"as RGBA (augserve.engine.functional): {engine:.3f} ms per variant against {plain:.3f} ms for the same spec "
        "in plain albumentations. The targets compare the service with "
        "the engine (LIMIT), not with plain albumentations.",
    ]
    spread = results["ours"].get("workers_2", {}).get("spread_share")
    if spread is not None:
        lines += [
            "",
            f"OURS against 2 server workers: the kernel placed the DataLoader workers' two connections on both "
            f"server workers in {100 * spread:.0f}% of samples (else both on one).",
        ]
    floor = results["transport"]
    scaling = _scale(results["limit"], "processes_2", "processes_1")
    lines += [
        "",
        "Transport floor: moving one raw variant over loopback TCP, with nothing else, took "
        f"{floor['ms_per_variant']:.3f} ms of CPU ({floor['server_ms_per_variant']:.3f} to send, "
        f"{floor['client_ms_per_variant']:.3f} to receive; {floor['gb_per_s']} GB/s). Against the engine's "
        f"{engine:.3f} ms that alone caps SERVICE/LIMIT at "
        f"{engine / (engine + floor['ms_per_variant']):.2f} on this machine, before any HTTP, framing or batching.",
        "",
        f"For the 2 workers / 1 worker targets: the engine alone, in-process, ran {scaling:.2f}x as fast on 2 "
        "processes as on 1 in this run, a ceiling for what a second worker can add on this machine.",
        "",
        "| target | measured | goal | met |",
        "|---|---:|---|---|",
    ]
    for check in results["targets"]:
        lines.append(f"| {check['target']} | {check['measured']} | {check['goal']} | {_verdict(check['met'])} |")
    lines += ["", *cold_lines(results)]
    lines += [
        "",
        "| output format (/v1/augment, 1 worker) | variants/s | bytes/variant | vs npy |",
        "|---|---:|---:|---:|",
    ]
    for fmt, summary in results["formats"].items():
        lines.append(
            f"| {fmt} | {summary['variants_per_s']:.0f} | {summary['bytes_per_variant']} | {summary['vs_npy']:.2f} |"
        )
    latency = results["latency"]
    size = latency["first_batch"]["batch_size"]
    lines += [
        "",
        f"| latency (1-worker server, batch of {size}) | p50 ms | p99 ms | variants/s |",
        "|---|---:|---:|---:|",
    ]
    for entry in (latency["clients_1"], latency["clients_8"]):
        lines.append(
            f"| {entry['clients']} concurrent client(s) | {entry['p50_ms']} | {entry['p99_ms']} "
            f"| {entry['variants_per_s']:.0f} |"
        )
    if "encodings" in results:
        lines += ["", *encoding_lines(results)]
    first = latency["first_batch"]
    memory = results["memory"]
    lines += [
        "",
        f"Time to first batch (warm): median {first['median_ms']} ms (min {first['min_ms']}, max {first['max_ms']}, "
        f"{first['trials']} trials).",
        f"Server memory over {memory['epochs']} epochs: peak RSS {memory['peak_rss_mib']} MiB; RSS after each epoch "
        f"{memory['rss_after_epoch_mib']} MiB; {memory['growth_pct']}% from the baseline after epoch 2 to the last.",
        "",
        "client / server / other cores: CPU seconds per wall second, during the timed window, of the client "
        "process (with its DataLoader workers; for LIMIT, the engine processes), of the server tree, and of "
        "everything else on the machine (other people's processes; windows with more than 0.15 were measured "
        "again, up to 3 times, keeping the quietest).",
        "",
        *section_lines(results),
    ]
    return "\n".join(lines) + "\n"


def encoding_lines(results: dict[str, Any], heading: bool = False) -> list[str]:
    """The wire encodings of epoch streams (bench/encodings.py): costs, fidelity, links, zstd levels."""
    found = results["encodings"]
    rates = found["rates"]
    lines = []
    if heading:
        info = results["machine"]
        lines += [
            "# augserve benchmark: wire encodings of epoch streams",
            "",
            f"Measured {info['date']} on {info['cpu']}, {info['cores']} cores shared by client and server; "
            f"{results['config']['samples']} JPEGs (256-640 px, real photos), the benchmark's spec (224x224 out), "
            "a 1-worker server, two client streams. Median of the timed windows.",
            "",
        ]
    lines += [
        "| wire encoding (epoch stream, 1 worker) | bytes/variant | vs raw | variants/s | client ms/variant "
        "| server ms/variant | other cores | first batch ms | PSNR dB (worst image) | mean / max abs error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, summary in rates.items():
        psnr = "identical" if summary["identical"] else f"{summary['psnr_db']} ({summary['worst_image_psnr_db']})"
        errors = "0" if summary["identical"] else f"{summary['mean_abs_error']} / {summary['max_abs_error']}"
        lines.append(
            f"| {key} | {summary['bytes_per_variant']} | {summary['bytes_vs_raw']:.3f} "
            f"| {summary['variants_per_s']:.0f} | {summary['client_ms_per_variant']:.3f} "
            f"| {summary['server_ms_per_variant']:.3f} | {summary['other_cores']:.2f} "
            f"| {summary['first_batch_ms']} | {psnr} | {errors} |"
        )
    lines += [
        "",
        "The codecs alone, in-process on the received variants (the least of a few passes): the server's encoding, "
        "and the client's reading of whole frames from memory into a batch array (raw: a copy).",
        "",
        "| wire encoding | server encode ms/variant | client read ms/variant |",
        "|---|---:|---:|",
    ]
    for key, cost in found["codecs"].items():
        lines.append(f"| {key} | {cost['encode_ms_per_variant']:.3f} | {cost['read_ms_per_variant']:.3f} |")
    lines += [
        "",
        "What a link carries at these bytes per variant (payload; frame headers add ~40 bytes a variant), and the "
        "cores the codec needs at that rate (client: reading the frames; servers: encoding, on top of augmenting):",
        "",
        "| link | " + " | ".join(rates) + " |",
        "|---|" + "---:|" * len(rates),
    ]
    for link, row in found["links"].items():
        cells = [
            f"{cell['variants_per_s']}/s (client {cell['client_cores']}, servers {cell['server_cores']} cores)"
            for cell in row.values()
        ]
        lines.append(f"| {link.replace('_gbe', ' GbE')} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"zstd levels on the received variants, one image at a time (the wire uses level {found['zstd_level']} "
        "with the up filter; the filter's own cost is in the codecs table's encode, not here):",
        "",
        "| filter | level | bytes/variant | ratio | compress ms/variant | decompress ms/variant |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in found["levels"]:
        lines.append(
            f"| {row['filter']} | {row['level']} | {row['bytes_per_variant']} | {row['ratio']:.2f} "
            f"| {row['compress_ms_per_variant']:.3f} | {row['decompress_ms_per_variant']:.3f} |"
        )
    return lines


def _verdict(met: bool | None) -> str:
    return "not measured" if met is None else ("yes" if met else "NO")


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = results["rows"] + results["cold_rows"]
    names = [row["configuration"] for row in table]
    rates = [row["variants_per_s"] for row in table]
    colors = [_color(name) for name in names]
    figure, axis = plt.subplots(figsize=(11, 0.42 * len(names) + 1.6))
    axis.barh(range(len(names)), rates, color=colors)
    axis.set_yticks(range(len(names)), names, fontsize=8)
    axis.invert_yaxis()
    limit = results["limit"]["processes_2"]["variants_per_s"]
    axis.axvline(limit, color="black", linestyle="--", linewidth=1, label="LIMIT, 2 processes")
    axis.axvline(0.9 * limit, color="grey", linestyle=":", linewidth=1, label="0.9 x LIMIT")
    for index, rate in enumerate(rates):
        axis.text(rate, index, f" {rate:.0f}", va="center", fontsize=8)
    info = results["machine"]
    axis.set_xlabel("variants per second (224x224 raw uint8)")
    axis.set_title(f"augserve throughput - {info['cpu']}, {info['cores']} cores, {info['date'][:10]}", fontsize=10)
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _color(name: str) -> str:
    for prefix, color in (("LIMIT", "#7f7f7f"), ("SERVICE", "#1f77b4"), ("PEER", "#d62728"), ("OURS", "#2ca02c")):
        if name.startswith(prefix):
            return color
    return "#9467bd"


def section_lines(results: dict[str, Any]) -> list[str]:
    """The tables of the sections that also run alone (bench/targets.py, replicas.py, pinned.py)."""
    return [
        "## What masks, boxes and keypoints cost the engine (one thread, in-process)",
        "",
        targets_section.table(results["target_costs"]).rstrip("\n"),
        "",
        *replicas.lines(results),
        "",
        *pinned.lines(results),
    ]


def write_sections(results: dict[str, Any], out: Path) -> None:
    """Each section that also runs alone gets, from this run, the files it writes alone."""
    found = {"machine": results["machine"], **results["target_costs"]}
    write_section(out, "targets", found, targets_section.markdown(found))
    for name, module in (("replicas", replicas), ("pinned", pinned)):
        found = {"machine": results["machine"], "config": results["config"], name: results[name]}
        write_section(out, name, found, module.markdown(found))


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results["rows"] = rows(results)
    results["cold_rows"] = cold_rows(results)
    results["targets"] = targets(results)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
    write_sections(results, out)
    plot(results, out / "throughput.png")
