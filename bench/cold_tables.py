"""The cold path's tables (bench/cold.py, LIMIT_COLD, the decoders): rows split by stage, issue 17's targets, and
their markdown. Apart from bench/report.py, which writes the whole run, so that ``python -m bench.cold`` writes
the same tables from its own run.
"""

from __future__ import annotations

from typing import Any

from .common import cores_cell, ms_cell, ratio

DECODERS = ("pillow", "simplejpeg", "simplejpeg_fast")  # bench/decoders.py


def cold_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The cold path (bench/cold.py, LIMIT_COLD): rates against LIMIT_COLD (2 processes, exact) and PEER, with
    CPU per variant split into decode, augment (the rest of the engine's or the pool's CPU) and transport (the
    client with its DataLoader workers, and the server's event loops)."""
    limit, cold = results["limit_cold"], results["cold"]
    base = limit.get("processes_2", {}).get("variants_per_s")
    peer = results["peer"]["variants_per_s"]
    share = f"{100 * cold['cache_share']:.0f}%"
    named = [(f"LIMIT_COLD: decode + engine in-process, {_cold_label(key)}", s) for key, s in limit.items()]
    for key, summary in cold["epoch"].items():
        named.append((f"SERVICE_COLD epoch stream, cache {share}, {_cold_label(key)}", summary))
    for key, summary in cold["ours"].items():
        named.append((f"OURS_COLD: DataLoader(2) + AugmentedDataset, cache {share}, {_cold_label(key)}", summary))
    return [_cold_row(name, summary, base, peer) for name, summary in named]


def _cold_row(name: str, summary: dict[str, Any], base: float | None, peer: float) -> dict[str, Any]:
    rate = summary["variants_per_s"]
    if "decode_ms_per_variant" in summary:  # LIMIT_COLD: the engine processes' own split
        decode, augment, transport = summary["decode_ms_per_variant"], summary["augment_ms_per_variant"], None
    else:
        decode = summary["server_decode_ms_per_variant"]
        augment = round(summary["server_pool_ms_per_variant"] - decode, 3)
        transport = round(summary["client_ms_per_variant"] + summary["server_loop_ms_per_variant"], 3)
    return {
        "configuration": name,
        "variants_per_s": rate,
        "vs_limit_cold": round(rate / base, 3) if base else None,
        "vs_peer": round(rate / peer, 3),
        "decode_ms_per_variant": decode,
        "augment_ms_per_variant": augment,
        "transport_ms_per_variant": transport,
        "other_cores": summary.get("other_cores"),
    }


def _cold_label(key: str) -> str:
    """``processes_2`` / ``fast_processes_2`` (LIMIT_COLD), ``workers_2_fast_disk`` (servers)."""
    parts = key.split("_")
    if "processes" in parts:
        count = int(parts[-1])
        return f"{count} process{'es' * (count > 1)}, {'fast' if parts[0] == 'fast' else 'exact'} decode"
    workers = int(parts[1])
    label = f"server {workers} worker{'s' * (workers > 1)}, {parts[2]} decode"
    return label + (", disk tier holding the set" if "disk" in parts else "")


def cold_targets(results: dict[str, Any]) -> list[tuple[str, float | None, str]]:
    """Issue 17's targets, each from this run's rows; None where a smoke run did not measure both sides."""
    cold, peer = results["cold"], results["peer"]["variants_per_s"]
    ours = {key: value["variants_per_s"] for key, value in cold["ours"].items() if "disk" not in key}
    exact = {key: rate for key, rate in ours.items() if "exact" in key}
    best, best_exact = max(ours, key=ours.get, default=None), max(exact, key=exact.get, default=None)  # type: ignore[arg-type]
    limit = results["limit_cold"].get("processes_2", {}).get("variants_per_s")
    service_2 = cold["epoch"].get("workers_2_exact", {}).get("variants_per_s")
    disk = cold["epoch"].get("workers_1_exact_disk", {}).get("variants_per_s")
    warm = results["service"]["epoch"]["workers_1"]["variants_per_s"]
    return [
        (f"OURS_COLD/PEER, best ({best})", ours[best] / peer if best else None, ">= 1.5"),
        (f"OURS_COLD/PEER, exact decode ({best_exact})", exact[best_exact] / peer if best_exact else None, ">= 1.0"),
        ("SERVICE_COLD/LIMIT_COLD, 2 workers / 2 processes, exact", ratio(service_2, limit), ">= 0.8"),
        ("SERVICE, RAM cache 5% + disk tier / all in RAM, 1 worker", ratio(disk, warm), ">= 0.9"),
    ]


FIDELITY_ROWS = (
    ("decodes", "whole decodes"),
    ("variants", "variants"),
    ("scaled_variants", "variants decoded smaller"),
)


def cold_lines(results: dict[str, Any]) -> list[str]:
    """The cold path: rates with CPU split by stage, the decoders, and what ``fast`` changes."""
    lines = [
        "## The cold path: a cache that holds 5% of the set",
        "",
        "| configuration | variants/s | vs LIMIT_COLD (2 proc, exact) | vs PEER | decode ms | augment ms "
        "| transport ms | other cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["cold_rows"]:
        cells = [ms_cell(row[f"{key}_ms_per_variant"]) for key in ("decode", "augment", "transport")]
        cells.append(cores_cell(row["other_cores"]))
        lines.append(
            f"| {row['configuration']} | {row['variants_per_s']:.0f} | {_ratio_cell(row['vs_limit_cold'])} "
            f"| {row['vs_peer']:.2f} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "CPU per variant: decode is the decoder's own time (LIMIT_COLD: its thread CPU; servers: "
        "`augserve_decode_seconds`, time inside the decoder), augment the rest of the engine's or the pool's CPU, "
        "transport the client (with its DataLoader workers) and the servers' event loops.",
    ]
    if "decoders" not in results:
        return lines
    speed, fast = results["decoders"]["speed"], results["decoders"]["fast_vs_exact"]
    lines += [
        "",
        "| decoder (bench set, one thread) | CPU ms/image | 2 threads / 1 thread, wall |",
        "|---|---:|---:|",
        *(
            f"| {name} | {speed[name]['cpu_ms_per_image']:.3f} | {speed[name]['threads_2_speedup']:.2f} |"
            for name in DECODERS
        ),
        "",
        f"`fast` decode on the bench's spec: share of variants by decode scale (eighths) {fast['share_by_scale']}.",
        "",
        "| `fast` against `exact` | count | PSNR dB median (worst) | mean abs error | max abs error |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in FIDELITY_ROWS:
        found = fast[key]
        if found["count"]:
            lines.append(
                f"| {label} | {found['count']} | {found['psnr_db_median']} ({found['psnr_db_worst']}) "
                f"| {found['mean_abs_error']} | {found['max_abs_error']} |"
            )
    return lines


def _ratio_cell(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"
