"""Several servers behind one client, without a balancer in front: spread, failover, and a content check.

Past one machine, trainers should not all funnel through one proxy. A client given several base URLs (a list,
or one comma-separated string) talks to them directly:

- **Spread**: a shard prefers the endpoint ``shard_index % n``, then the next ones in turn, so the workers of
  all ranks spread over the endpoints deterministically.
- **Failover**: a request that cannot connect, or that gets a 5xx (503 while a replica drains included), marks
  that endpoint down with a growing backoff and goes to the next; a stream that breaks is resumed by its
  caller at the next undelivered batch, on the next healthy endpoint. Variants depend only on their seed, not
  on the replica, so a resumed epoch has exactly the bytes it would have had.
- **Coming back**: once its backoff has passed, an endpoint is probed (``/readyz``) before it is used again.
- **Same content**: every endpoint must serve the same datasets (a shared data dir). Before an endpoint first
  streams a dataset, its digest is compared with the first endpoint's; a mismatch raises
  :class:`ReplicaMismatchError` rather than mixing two datasets into one epoch.

One endpoint, typically a load balancer, has nowhere to fail over to: there a plain call that gets a proxy's
502, 503 or 504 is sent again to the same address with backoff (:class:`.connections.ProxyRetryingClient`),
since the balancer stops choosing a dead replica within seconds. With several endpoints the next one is asked
at once instead.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from .connections import ProxyRetryingClient, StreamConnections, raise_for_error, ssl_context
from .protocol.errors import ReplicaMismatchError, TransportError

MAX_BACKOFF = 8.0
PROBE_TIMEOUT = 2.0


def parse_urls(base_url: str | Sequence[str]) -> list[str]:
    """A list of base URLs from a list or a comma-separated string, without trailing slashes."""
    urls = base_url.split(",") if isinstance(base_url, str) else list(base_url)
    cleaned = [url.strip().rstrip("/") for url in urls if url.strip()]
    if not cleaned:
        raise ValueError("no server URL given")
    return cleaned


@dataclass
class Replica:
    url: str
    http: httpx.Client
    streams: StreamConnections | None
    failures: int = 0
    down_until: float = 0.0


class Replicas:
    def __init__(
        self,
        urls: list[str],
        timeout: float,
        transport: httpx.BaseTransport | None,
        headers: dict[str, str] | None,
    ) -> None:
        self.all: list[Replica] = []
        client_class = ProxyRetryingClient if len(urls) == 1 else httpx.Client
        for url in urls:
            http = client_class(
                base_url=url, timeout=timeout, transport=transport, headers=headers, verify=ssl_context()
            )
            # Streamed bodies are read in place by http.client, configured from http (see .connections); an
            # injected transport carries everything.
            self.all.append(Replica(url, http, None if transport is not None else StreamConnections(http)))
        self._digests: dict[str, str] = {}  # dataset -> the digest the first endpoint to serve it gave
        self._checked: set[tuple[str, str]] = set()  # (url, dataset) pairs known to agree

    def order(self, prefer: int = 0) -> list[Replica]:
        """The endpoints to try, in order: the healthy ones, from ``prefer % n`` on; when none is, all of them,
        the one back soonest first (the caller's retries back off between rounds)."""
        start = prefer % len(self.all)
        rotation = self.all[start:] + self.all[:start]
        now = time.monotonic()
        healthy = [replica for replica in rotation if replica.down_until <= now and self._usable(replica)]
        return healthy or sorted(rotation, key=lambda replica: replica.down_until)

    def any_healthy(self) -> bool:
        return any(replica.down_until <= time.monotonic() for replica in self.all)

    def failed(self, replica: Replica) -> None:
        replica.failures += 1
        replica.down_until = time.monotonic() + min(MAX_BACKOFF, 0.5 * 2 ** (replica.failures - 1))

    def succeeded(self, replica: Replica) -> None:
        replica.failures, replica.down_until = 0, 0.0

    def check(self, replica: Replica, dataset: str) -> None:
        """Refuse an endpoint that serves other content than the others under the name ``dataset``."""
        if len(self.all) == 1 or (replica.url, dataset) in self._checked:
            return
        try:
            response = replica.http.get(f"/v1/datasets/{dataset}")
        except httpx.TransportError as error:
            raise TransportError(f"GET {replica.url}/v1/datasets/{dataset}: {error}") from error
        raise_for_error(response.status_code, response.read)
        digest = str(response.json().get("digest"))
        expected = self._digests.setdefault(dataset, digest)
        if digest != expected:
            raise ReplicaMismatchError(
                f"{replica.url} serves dataset {dataset!r} with digest {digest[:12]}, another endpoint with "
                f"{expected[:12]}: every endpoint must serve the same datasets (one shared data dir)"
            )
        self._checked.add((replica.url, dataset))

    def close(self) -> None:
        for replica in self.all:
            replica.http.close()
            if replica.streams is not None:
                replica.streams.close()

    def _usable(self, replica: Replica) -> bool:
        """An endpoint that failed before is probed once its backoff has passed; a failed probe extends it."""
        if not replica.failures or len(self.all) == 1:
            return True
        try:
            ready = replica.http.get("/readyz", timeout=PROBE_TIMEOUT).status_code == 200
        except httpx.HTTPError:
            ready = False
        if not ready:
            self.failed(replica)
        return ready
