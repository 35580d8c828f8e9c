"""The soak's figures from what its clients, servers and RSS sampler recorded, its checks, and its markdown.

Kept apart from bench/soak.py, which runs the soak: this part only counts. RSS is judged per process life (a
killed replica's first and second lives are two), each against its own first tenth after warm-up, because a
fresh process starts lower than one that has served for minutes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .soak import SoakConfig

RSS_TOLERANCE = 0.10


def flatness(readings: list[tuple[float, float, float]], start: float, end: float, window: float) -> dict[str, Any]:
    """RSS of one process's life from ``start`` to ``end``: the median of its first ``window`` after a warm-up
    of one ``window``, against the median of its last ``window``; and what its decoded-image cache held then,
    since the cache grows by design (every upload is decoded into it) up to its bound."""
    first = [(mib, cache) for seconds, mib, cache in readings if start + window <= seconds < start + 2 * window]
    last = [(mib, cache) for seconds, mib, cache in readings if end - window <= seconds <= end]
    if not first or not last:
        return {"first_mib": None, "last_mib": None, "change_pct": None, "flat": False}
    (first_mib, first_cache), (last_mib, last_cache) = np.median(first, axis=0), np.median(last, axis=0)
    change = (last_mib - first_mib) / first_mib
    return {
        "first_mib": round(float(first_mib), 1),
        "last_mib": round(float(last_mib), 1),
        "change_pct": round(100 * float(change), 1),
        "peak_mib": round(max(mib for seconds, mib, _ in readings if start <= seconds <= end), 1),
        "cache_first_mib": round(float(first_cache), 1),
        "cache_last_mib": round(float(last_cache), 1),
        "flat": bool(abs(change) <= RSS_TOLERANCE),
    }


Reading = tuple[float, int, float, float]  # seconds into the run, replica, RSS MiB, decoded-image cache MiB


def memory(readings: list[Reading], timeline: dict[str, float], window: float) -> dict[str, Any]:
    """Each replica process's life: replica 0 before its kill and after its restart, replica 1 throughout."""
    killed, restarted, ended = timeline["killed_at_s"], timeline["restarted_at_s"], timeline["ended_at_s"]
    zero = [(seconds, mib, cache) for seconds, number, mib, cache in readings if number == 0]
    one = [(seconds, mib, cache) for seconds, number, mib, cache in readings if number == 1]
    return {
        "replica_0_before_kill": flatness([r for r in zero if r[0] < killed], 0.0, killed, window),
        "replica_0_after_restart": flatness([r for r in zero if r[0] >= restarted], restarted, ended, window),
        "replica_1": flatness(one, 0.0, ended, window),
    }


def summarise(
    config: SoakConfig,
    clients: dict[str, list[dict[str, Any]]],
    servers: list[dict[str, Counter[str]]],
    readings: list[Reading],
    timeline: dict[str, float],
    tracebacks: int,
) -> dict[str, Any]:
    trainers, uploaders, augmenters = clients["trainer"], clients["uploader"], clients["augmenter"]
    first_batch = np.array([s for stats in trainers for s in stats["first_batch_s"]] or [np.nan]) * 1000
    failovers: Counter[str] = Counter()
    for stats in (*trainers, *uploaders, *augmenters):
        failovers.update(stats["failovers"])
    server_5xx = sum(n for routes in servers for by_status in routes.values() for s, n in by_status.items() if s >= "5")
    epochs_after_restart = servers[1].get("/v1/datasets/{name}/epochs", Counter())["200"]
    rss = memory(readings, timeline, config.seconds / 10)
    figures = {
        "trainers": {
            "reported": len(trainers),
            "epochs": sum(stats["epochs"] for stats in trainers),
            "samples": sum(stats["samples"] for stats in trainers),
            "lost": sum(stats["lost"] for stats in trainers),
            "duplicated": sum(stats["duplicated"] for stats in trainers),
            "first_batch_ms": {
                "p50": round(float(np.percentile(first_batch, 50)), 1),
                "p99": round(float(np.percentile(first_batch, 99)), 1),
                "max": round(float(np.max(first_batch)), 1),
                "count": int(first_batch.size),
            },
            "errors": [error for stats in trainers for error in stats["errors"]][:20],
        },
        "uploads": {
            "rounds": sum(s["rounds"] for s in uploaders),
            "delete_replies_lost": sum(s["delete_replies_lost"] for s in uploaders),
            "errors": [e for s in uploaders for e in s["errors"]][:20],
        },
        "augments": {
            "calls": sum(s["calls"] for s in augmenters),
            "variants": sum(s["variants"] for s in augmenters),
            "cut_by_the_kill": sum(s["cut"] for s in augmenters),
            "errors": [e for s in augmenters for e in s["errors"]][:20],
        },
        "failovers": dict(failovers),
        "server_5xx": server_5xx,
        "server_tracebacks": tracebacks,
        "epochs_served_after_restart": epochs_after_restart,
        "rss": rss,
        "timeline": {key: round(value, 1) for key, value in timeline.items()},
    }
    client_5xx = failovers["5xx"] + sum(s["5xx"] for s in augmenters)
    checks = {
        "every client reported": (len(trainers), len(uploaders), len(augmenters))
        == (config.trainers, config.uploaders, config.augmenters),
        "every trainer finished epochs": all(stats["epochs"] > 0 for stats in trainers),
        "0 samples lost or duplicated": figures["trainers"]["lost"] == figures["trainers"]["duplicated"] == 0,
        "0 trainer errors": not figures["trainers"]["errors"],
        "0 5xx seen by clients": client_5xx == 0,
        "0 5xx counted by the servers": server_5xx == 0,
        "0 tracebacks in server logs": tracebacks == 0,
        "the kill broke connections, and clients failed over": failovers["connection"] > 0,
        "the restarted replica served epochs again": epochs_after_restart > 0,
        "uploads and augment calls ran, 0 errors": figures["uploads"]["rounds"] > 0
        and figures["augments"]["calls"] > 0
        and not figures["uploads"]["errors"]
        and not figures["augments"]["errors"],
        f"RSS flat (within {RSS_TOLERANCE:.0%})": all(life["flat"] for life in rss.values()),
    }
    return {"config": asdict(config), "figures": figures, "checks": checks, "passed": all(checks.values())}


def markdown(results: dict[str, Any]) -> str:
    config, figures = results["config"], results["figures"]
    trainers, first = figures["trainers"], figures["trainers"]["first_batch_ms"]
    lines = [
        "# Soak: trainers, uploads and augment calls on two replicas, one killed and restarted midway",
        "",
        f"`python -m bench.soak`: {config['seconds']:.0f} s, {config['trainers']} trainers, {config['uploaders']} "
        f"uploaders, {config['augmenters']} augmenters; {config['samples']} samples, batches of "
        f"{config['batch_size']}, {config['size']}x{config['size']} out; {config['threads']} thread per replica. "
        f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, {results['machine']['date']}.",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| epochs (samples) delivered | {trainers['epochs']} ({trainers['samples']}) |",
        f"| samples lost / duplicated | {trainers['lost']} / {trainers['duplicated']} |",
        f"| time to first batch p50 / p99 / max | {first['p50']} / {first['p99']} / {first['max']} ms |",
        f"| uploads: register, describe, delete (deletes whose reply the kill cut off, 404 when sent again) | "
        f"{figures['uploads']['rounds']} ({figures['uploads']['delete_replies_lost']}) |",
        f"| augment calls (cut by the kill, sent again) | {figures['augments']['calls']} "
        f"({figures['augments']['cut_by_the_kill']}) |",
        f"| failovers by kind | {', '.join(f'{k}: {v}' for k, v in sorted(figures['failovers'].items())) or 'none'} |",
        f"| 5xx counted by the servers | {figures['server_5xx']} |",
        f"| epochs served by the restarted replica | {figures['epochs_served_after_restart']} |",
        f"| killed / ready again / end | {figures['timeline']['killed_at_s']} / "
        f"{figures['timeline']['restarted_at_s']} / {figures['timeline']['ended_at_s']} s |",
    ]
    for life, rss in figures["rss"].items():
        lines.append(
            f"| RSS {life.replace('_', ' ')}: first / last tenth (peak); of which the decoded-image cache | "
            f"{rss['first_mib']} / {rss['last_mib']} MiB, {rss['change_pct']}% ({rss.get('peak_mib')}); "
            f"{rss.get('cache_first_mib')} / {rss.get('cache_last_mib')} MiB |"
        )
    lines += ["", "| check | passed |", "|---|---|"]
    lines += [f"| {name} | {'yes' if passed else '**no**'} |" for name, passed in results["checks"].items()]
    return "\n".join(lines) + "\n"
