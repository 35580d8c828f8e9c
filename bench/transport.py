"""TRANSPORT: the CPU it takes to move raw variants over loopback TCP, and nothing else.

This is the floor under SERVICE's cost per variant, whatever the server and the client do around it: the
kernel copies every byte into the socket on one side and out of it on the other, on the same two cores the
engine needs. A forked sender writes batches of raw variants (the benchmark's batch size and crop size, uint8)
from one array with ``sendall``; this process reads them into one array of its own with ``recv_into``, the way
uvicorn and the client's ``http.client.readinto`` move an epoch batch. No HTTP, no framing, no pixels touched.
``client_cpu_s`` is the receiver's CPU, ``server_cpu_s`` the sender's.
"""

from __future__ import annotations

import multiprocessing as mp
import socket
import time
from typing import Any

import numpy as np

from .common import SPEC, Config, Rate, system_busy, timed

CROP = next(op["size"] for op in SPEC["ops"] if op["op"] == "crop")
VARIANT_BYTES = CROP[0] * CROP[1] * 3


def _send(port: int, nbytes: int, batches: int, results: Any) -> None:
    payload = memoryview(np.full(nbytes, 7, dtype=np.uint8))
    with socket.create_connection(("127.0.0.1", port)) as connection:
        cpu = time.process_time()
        for _ in range(batches):
            connection.sendall(payload)
        results.put(time.process_time() - cpu)


def _receive(connection: socket.socket, buffer: memoryview) -> None:
    filled = 0
    while filled < len(buffer):
        count = connection.recv_into(buffer[filled:])
        if not count:
            raise ConnectionError("the sender stopped early")
        filled += count


def run_once(config: Config) -> Rate:
    """One window: ``4 x passes`` epochs' worth of batches (enough bytes for a stable CPU reading)."""
    batches = max(8, 4 * config.samples * config.passes // config.batch_size)
    buffer = memoryview(np.empty(config.batch_size * VARIANT_BYTES, dtype=np.uint8))
    context = mp.get_context("fork")
    results = context.Queue()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(60)  # a sender that died before connecting fails the window instead of hanging it
        args = (listener.getsockname()[1], len(buffer), batches, results)
        sender = context.Process(target=_send, args=args)
        sender.start()
        connection, _ = listener.accept()
    with connection:
        busy, cpu, start = system_busy(), time.process_time(), time.perf_counter()
        for _ in range(batches):
            _receive(connection, buffer)
        wall, received = time.perf_counter() - start, time.process_time() - cpu
        other = system_busy() - busy
    sent = results.get(timeout=60)
    sender.join()
    rate = Rate(batches * config.batch_size, wall, received, sent, max(0.0, other - received - sent))
    rate.extra["gb_per_s"] = round(batches * len(buffer) / wall / 1e9, 2)
    return rate


def run(config: Config) -> dict[str, Any]:
    summary = timed(lambda: run_once(config), config)
    cpu = summary["client_cpu_s"] + summary["server_cpu_s"]
    summary["ms_per_variant"] = round(1e3 * cpu / summary["variants"], 3)
    return summary
