"""ENCODINGS: what each wire encoding of an epoch stream costs and saves, on the benchmark's real photos.

For raw, zstd and jpeg (q90, q75): payload bytes per variant, variants/s, the CPU per variant of the client
(reading, decompressing, decoding) and of the server (augmenting and encoding), and the time to a first batch;
for jpeg, how far its pixels are from raw (PSNR, mean and max absolute error); for zstd, that its pixels are
raw's, byte for byte. Same server (1 worker), dataset, spec and two client streams as SERVICE epoch; only
``encoding`` changes.

On loopback the link is never the limit, so these rates are CPU-bound (client and server share two cores,
and on a shared machine other people's processes take their share of them). What carries over to a real link
is bytes per variant (how many variants a link can carry) and what the codecs cost on each end. ``codecs``
measures those in-process on the received variants, the least of a few passes (so other processes barely
move it): the server's encoding of each variant as its pool does, and the client's reading of whole frames
from memory into a batch array (raw: one copy; zstd: decompress and undo the row filter; jpeg: decode). From
them ``links`` works out, for 1, 10 and 25 GbE, how many variants a second each encoding carries and how many
cores the codec needs at that rate on each end.

``levels`` is the measurement behind ``protocol.encodings.ZSTD_LEVEL``: the received raw variants compressed
in-process at a few zstd levels, with and without the row filter, one image at a time as the server does.

    .venv/bin/python -m bench.encodings [--smoke] [--out DIR]   # this section alone: DIR/encodings.{json,md}
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
from augserve_client import Client
from augserve_client.epoch_batches import EpochBatch
from augserve_client.protocol import encodings as wire_encodings
from augserve_client.protocol import wire

from .common import SEED, SPEC, Config, Rate, measure, median, section_main, timed
from .service import STREAMS, Epochs, in_parallel
from .serving import CLIENT_TIMEOUT, BenchServer, register, spread_clients

ENCODINGS: tuple[tuple[str, int | None], ...] = (("raw", None), ("zstd", None), ("jpeg", 90), ("jpeg", 75))
LINKS_GBPS = (1, 10, 25)
LEVELS = (-1, 1, 2, 3)
LEVEL_IMAGES = 128  # variants compressed per level (fewer in a smoke run)
FIRST_BATCH_TRIALS = 7
PASSES = 5  # in-process codec timings: the least of this many passes


def name(encoding: str, quality: int | None) -> str:
    return encoding if quality is None else f"{encoding}_q{quality}"


def options(encoding: str, quality: int | None) -> dict[str, Any]:
    return {"encoding": encoding, **({"quality": quality} if quality is not None else {})}


def batches(client: Client, dataset: str, config: Config, epoch: int, shard: int, shards: int, **encoding: Any):
    return client.epoch(
        dataset,
        SPEC,
        batch_size=config.batch_size,
        seed=SEED,
        epoch=epoch,
        shard_index=shard,
        shard_count=shards,
        **encoding,
    )


def window(server: BenchServer, dataset: str, config: Config, epochs: Epochs, encoding: dict[str, Any]) -> Rate:
    """``config.epochs`` epochs, each split into 2 shards streamed at once, as SERVICE epoch does."""
    payload, images = [0] * STREAMS, [0] * STREAMS  # padding included in both
    with spread_clients(server, STREAMS) as clients:
        numbers = epochs.take(config.epochs)

        def shards(stream: int, client: Client) -> int:
            received = 0
            for epoch in numbers:
                for batch in batches(client, dataset, config, epoch, stream, STREAMS, **encoding):
                    received += len(batch.images) - batch.padding
                    payload[stream] += batch.wire_bytes
                    images[stream] += len(batch.images)
            return received

        rate = measure(lambda: in_parallel(clients, shards), server)
    rate.extra["bytes_per_variant"] = round(sum(payload) / sum(images))
    return rate


def first_batch_ms(server: BenchServer, dataset: str, config: Config, encoding: dict[str, Any]) -> float:
    """Median milliseconds from asking for a one-batch epoch to holding its decoded array (fresh epochs)."""
    trials = []
    with Client(server.url, timeout=CLIENT_TIMEOUT) as client:
        for trial in range(FIRST_BATCH_TRIALS + 1):
            start = time.perf_counter()
            stream = client.epoch(
                dataset, SPEC, batch_size=config.batch_size, seed=SEED, epoch=30_000 + trial, end_batch=1, **encoding
            )
            (received,) = list(stream)
            assert received.images.shape[0] == config.batch_size
            trials.append(time.perf_counter() - start)
    return round(1e3 * median(trials[1:]), 2)  # the first trial opened the connection


def epoch_images(server: BenchServer, dataset: str, config: Config, encoding: dict[str, Any]) -> np.ndarray:
    """Every variant of one whole epoch, in order."""
    with Client(server.url, timeout=CLIENT_TIMEOUT) as client:
        received: list[EpochBatch] = list(batches(client, dataset, config, 0, 0, 1, **encoding))
    return np.concatenate([batch.images for batch in received])


def fidelity(images: np.ndarray, raw: np.ndarray) -> dict[str, Any]:
    """How far ``images`` are from ``raw``: PSNR over all pixels and of the worst image, absolute errors."""
    difference = images.astype(np.int16) - raw.astype(np.int16)
    squared = difference.astype(np.float64) ** 2
    error = np.abs(difference)

    def psnr(mse: float) -> float | None:
        return None if mse == 0 else round(float(10 * np.log10(255**2 / mse)), 2)

    return {
        "identical": bool(not error.any()),
        "psnr_db": psnr(float(squared.mean())),
        "worst_image_psnr_db": psnr(float(squared.reshape(len(images), -1).mean(axis=1).max())),
        "mean_abs_error": round(float(error.mean()), 3),
        "p999_abs_error": int(np.percentile(error, 99.9)),
        "max_abs_error": int(error.max()),
    }


def levels(raw: np.ndarray, count: int) -> list[dict[str, Any]]:
    """zstd levels on received variants, one image at a time, with and without the row ("up") filter."""
    import zstandard

    images = raw[:count]
    rows = []
    for filtered in (True, False):
        sources = [wire_encodings.up_filter(image) if filtered else image for image in images]
        for level in LEVELS:
            compress = zstandard.ZstdCompressor(level=level).compress
            decompress = zstandard.ZstdDecompressor().decompress
            compressed = [compress(source) for source in sources]
            packed = least_cpu(lambda compress=compress, sources=sources: [compress(s) for s in sources])
            unpacked = least_cpu(lambda decompress=decompress, data=compressed: [decompress(d) for d in data])
            size = sum(len(data) for data in compressed) / len(images)
            rows.append(
                {
                    "filter": "up" if filtered else "none",
                    "level": level,
                    "bytes_per_variant": round(size),
                    "ratio": round(images[0].nbytes / size, 3),
                    "compress_ms_per_variant": round(1e3 * packed / len(images), 3),
                    "decompress_ms_per_variant": round(1e3 * unpacked / len(images), 3),
                }
            )
    return rows


def least_cpu(work: Any) -> float:
    """The least CPU seconds of ``PASSES`` runs of ``work()``."""
    spent = []
    for _ in range(PASSES):
        cpu = time.process_time()
        work()
        spent.append(time.process_time() - cpu)
    return min(spent)


def codecs(raw: np.ndarray, batch_size: int) -> dict[str, Any]:
    """Per encoding, in-process: the server's encoding per variant, and the client's reading of whole frames
    (from memory, into a fresh batch array) per variant, with the wire's own writers and readers."""
    costs = {}
    for encoding, quality in ENCODINGS:
        encoded: list[bytes] = []
        if encoding != "raw":

            def encode(encoding: str = encoding, quality: int | None = quality, out: list[bytes] = encoded) -> None:
                out[:] = [wire_encodings.encode_image(image, encoding, quality) for image in raw]

            encode_s = least_cpu(encode)
        frames = []
        for start in range(0, len(raw), batch_size):
            images = raw[start : start + batch_size]
            if encoding == "raw":
                frames += wire.batch_frame(images, batch=0)
            else:
                frames += wire.encoded_batch_frame(images.shape, encoded[start : start + batch_size], encoding, quality)
        stream = b"".join(bytes(part) for part in [*frames, *wire.frame({"kind": "end", "batches": 0})])
        decode_s = least_cpu(lambda stream=stream: list(wire.read_frames(io.BytesIO(stream))))
        costs[name(encoding, quality)] = {
            "encode_ms_per_variant": 0.0 if encoding == "raw" else round(1e3 * encode_s / len(raw), 3),
            "read_ms_per_variant": round(1e3 * decode_s / len(raw), 3),
        }
    return costs


def links(summaries: dict[str, Any], costs: dict[str, Any]) -> dict[str, Any]:
    """Per link speed and encoding: the variants a second the link carries, and the cores the codec needs at
    that rate: on the client to read the frames (raw: a copy) and on the servers to encode (on top of
    augmenting, and of the sockets on both ends, which cost about the same per byte for every encoding)."""
    carried: dict[str, Any] = {}
    for gbps in LINKS_GBPS:
        row = {}
        for key, summary in summaries.items():
            rate = gbps * 1e9 / 8 / summary["bytes_per_variant"]
            row[key] = {
                "variants_per_s": round(rate),
                "client_cores": round(rate * costs[key]["read_ms_per_variant"] / 1e3, 1),
                "server_cores": round(rate * costs[key]["encode_ms_per_variant"] / 1e3, 1),
            }
        carried[f"{gbps}_gbe"] = row
    return carried


def run(server: BenchServer, dataset: str, config: Config) -> dict[str, Any]:
    """Every encoding on a warm server (SERVICE epoch warmed its cache, or ``main`` does)."""
    raw = epoch_images(server, dataset, config, {})
    epochs = Epochs()
    summaries: dict[str, Any] = {}
    for encoding, quality in ENCODINGS:
        key, asked = name(encoding, quality), options(encoding, quality)
        window(server, dataset, config, epochs, asked)  # warm this encoding's path on both ends
        summary = timed(lambda asked=asked: window(server, dataset, config, epochs, asked), config)
        summary["first_batch_ms"] = first_batch_ms(server, dataset, config, asked)
        summary.update(fidelity(epoch_images(server, dataset, config, asked), raw))
        summaries[key] = summary
    for summary in summaries.values():
        summary["bytes_vs_raw"] = round(summary["bytes_per_variant"] / summaries["raw"]["bytes_per_variant"], 4)
        summary["rate_vs_raw"] = round(summary["variants_per_s"] / summaries["raw"]["variants_per_s"], 3)
    count = min(len(raw), LEVEL_IMAGES if not config.smoke else 8)
    costs = codecs(raw[: max(count, config.batch_size)], config.batch_size)
    return {
        "rates": summaries,
        "codecs": costs,
        "links": links(summaries, costs),
        "zstd_level": wire_encodings.ZSTD_LEVEL,
        "levels": levels(raw, count),
    }


def standalone(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The section alone: its own 1-worker server, every image decoded into the cache before any window."""
    from . import data

    config = Config.tiny() if args.smoke else Config.full()
    dataset = data.make_dataset(work / "images", config.samples, config.classes)
    server = BenchServer(work / "data", work / "logs", 1, 0).start()
    try:
        dataset_name = register(server, dataset.root)
        epoch_images(server, dataset_name, config, {})  # decode every image into the cache
        return {"config": vars(config), "encodings": run(server, dataset_name, config)}
    finally:
        server.stop()


def markdown(results: dict[str, Any]) -> str:
    from .report import encoding_lines

    return "\n".join(encoding_lines(results, heading=True)) + "\n"


def main(argv: list[str] | None = None) -> None:
    section_main(__doc__, "encodings", standalone, markdown, argv)


if __name__ == "__main__":
    main()
