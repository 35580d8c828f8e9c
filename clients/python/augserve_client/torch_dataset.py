"""``AugmentedDataset``: a PyTorch ``IterableDataset`` that streams augmented batches from augserve.

Use it with ``DataLoader(dataset, batch_size=None, num_workers=N)``: the server already batches. Every
DataLoader worker of every DDP rank streams its own shard (``shard_index = rank * workers + worker``), so each
sample is delivered exactly once per epoch however the job is split. The rank is resolved when iteration starts,
not in ``__init__`` (the process group may be initialised later). Workers started by spawn or forkserver do not
inherit the process group: on their own they would each take themselves for rank 0 of 1 and deliver every sample
once per rank, with no error. So the topology the trainer knows when DataLoader pickles the dataset into its
workers travels with it, and a topology nobody can know raises rather than being guessed.

``state_dict()`` / ``load_state_dict()`` follow torchdata's ``StatefulDataLoader`` convention: the state says
which epoch and how many batches of each shard were delivered, and a new dataset object loaded with it resumes
with the next batch. ``StatefulDataLoader`` collects it from every worker; without workers, call them directly.
That resumes on the same topology. On another one (other ranks, other workers), turn the saved states into the
epoch's progress, ``dataset.progress(*states)``, and load that into the new dataset with ``load_progress``
before its loader is built (see :mod:`augserve_client.resume`).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

try:
    import torch
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("AugmentedDataset needs PyTorch: pip install 'augserve[torch]'") from error

from .client import Client, SpecInput, as_spec
from .epoch_batches import EpochBatch, EpochBatches
from .next_epoch import EpochStreams
from .protocol.datasets import dataset_path
from .protocol.encodings import codec
from .protocol.epochs import (
    Encoding,
    EpochRequest,
    Progress,
    batches_per_shard,
    remaining_positions,
    shard_batch_count,
)
from .protocol.errors import NotFoundError
from .protocol.wire import empty_bytes
from .resume import epoch_progress, read_progress
from .tensors import as_tensor, shared_bytes, target_batch


class AugmentedDataset(IterableDataset):
    """Freshly augmented (images, labels) batches from an augserve server, for every epoch.

    ``server``: one URL, or several replicas serving the same datasets (a list or a comma-separated string).
    ``dataset``: the name of a dataset registered on the server, or a local ImageFolder directory, uploaded
    once (only files the server lacks; a progress bar shows it) and named after its content.
    ``output``: ``"uint8"`` gives uint8 NCHW tensors; ``"float"`` gives float32 in [0, 1], normalised with
    ``mean``/``std`` when given. ``rank``/``world_size``, when not given, come from torch.distributed when it is
    initialised, else from the ``RANK``/``WORLD_SIZE`` variables torchrun sets, else rank 0 of 1 (see ``_ranks``).
    ``encoding``: ``"raw"`` (default), ``"zstd"`` (lossless) or ``"jpeg"`` at ``quality`` (lossy): what batches
    travel as; the workers decode them (docs/wire-format.md#choosing-an-encoding).

    A dataset with targets (masks, boxes, keypoints: docs/targets.md) yields dict batches instead of (images,
    labels): see :func:`target_batch`; ``padded_targets`` pads boxes and keypoints into one tensor each.

    ``next_epoch_ahead``: once the last batch of epoch n has arrived, open epoch n + 1's stream while the
    trainer works through the batches ahead of it, so the next epoch starts without a round trip
    (:mod:`augserve_client.next_epoch`; with ``persistent_workers=True``, or without workers). A trainer that
    asks for another epoch drops it unused.
    """

    def __init__(
        self,
        server: str | Sequence[str],
        dataset: str | Path,
        spec: SpecInput,
        batch_size: int,
        seed: int = 0,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        output: str = "uint8",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        prefetch: int = 4,
        retries: int = 8,
        timeout: float = 120.0,
        progress: bool = True,
        api_key: str | None = None,
        encoding: Encoding = "raw",
        quality: int | None = None,
        padded_targets: bool = False,
        next_epoch_ahead: bool = True,
    ) -> None:
        super().__init__()
        if output not in ("uint8", "float"):
            raise ValueError("output must be 'uint8' or 'float'")
        EpochRequest(encoding=encoding, quality=quality)  # a bad pair is refused here, in the trainer
        codec(encoding)  # and a missing package too, not in every worker
        self.encoding, self.quality = encoding, quality
        self.server, self.timeout, self.api_key = server, timeout, api_key
        self.spec = as_spec(spec)
        self.batch_size, self.seed, self.shuffle, self.drop_last = batch_size, seed, shuffle, drop_last
        self.output, self.mean, self.std = output, mean, std
        self.padded_targets = padded_targets
        self.rank, self.world_size = rank, world_size
        self._captured: tuple[int, int] | None = None  # (rank, world) resolved in the trainer, set by pickling
        self.prefetch, self.retries = prefetch, retries
        self.next_epoch_ahead = next_epoch_ahead
        self._streams: tuple[int, EpochStreams] | None = None  # (pid, this process's streams)
        # Shared with DataLoader workers, persistent ones included: set_epoch in the trainer reaches them.
        self._epoch = multiprocessing.Value("q", 0, lock=False)
        self._delivered_epoch = 0  # the epoch that _delivered describes
        self._delivered: dict[str, int] = {}  # "shard_index/shard_count" -> batches delivered in that epoch
        self._skip: tuple[int, Progress] | None = None  # (epoch, what a resumed run skips in it)
        with self._client() as client:
            self.dataset, self.size = self._register(client, dataset, progress)

    def _client(self) -> Client:
        return Client(self.server, timeout=self.timeout, api_key=self.api_key)

    @staticmethod
    def _register(client: Client, dataset: str | Path, progress: bool) -> tuple[str, int]:
        """The dataset's name on the server and its sample count, uploading a local folder first.

        A str is always a dataset name, even when a local folder has that name. One the server does not know,
        or that cannot be a name at all (a path), raises an error naming it, pointing at ``Path(...)`` when a
        local folder of that name exists: a newcomer's most likely slip.
        """
        if isinstance(dataset, Path):
            name = client.upload_folder(None, dataset, progress=progress)["name"]
            return name, int(client.describe(name)["count"])
        name = str(dataset)
        try:
            local = bool(name) and Path(name).expanduser().is_dir()
        except (OSError, RuntimeError):  # a name too long for a path, or ~user of no such user: no folder
            local = False
        if local:
            expand = ".expanduser()" if name.startswith("~") else ""
            hint = f"; a local folder of that name exists: pass Path({name!r}){expand} to upload it"
        else:
            hint = "; a str names a dataset registered on the server, a Path a local ImageFolder to upload"
        dataset_path(name, hint)
        try:
            return name, int(client.describe(name)["count"])
        except NotFoundError as error:
            raise NotFoundError(error.status, error.code, error.message + hint, **error.details) from None

    @property
    def epoch(self) -> int:
        return int(self._epoch.value)

    def set_epoch(self, epoch: int) -> None:
        """Like DistributedSampler.set_epoch: a new epoch means a new order and new variants."""
        self._epoch.value = epoch

    def _resume_point(self, epoch: int, key: str, batches: int) -> int:
        """Batches of this shard already delivered in ``epoch`` (progress in any other epoch does not count);
        a shard delivered whole starts over, as DataLoader users expect of an epoch iterated again."""
        if epoch != self._delivered_epoch:
            self._delivered_epoch, self._delivered = epoch, {}
        delivered = self._delivered.get(key, 0)
        return 0 if delivered >= batches else delivered

    def _skipped(self, epoch: int) -> Progress | None:
        return self._skip[1] if self._skip is not None and self._skip[0] == epoch else None

    def _ranks(self) -> tuple[int, int]:
        """(rank, world size), from the first source that knows: explicit arguments, the process group of this
        process, the topology captured in the trainer when the dataset was pickled into this worker, then torchrun's
        environment. With none of them this is a single process: rank 0 of 1. Where the environment says there are
        several ranks but not which one this is, guessing would deliver samples twice or never, so it raises."""
        if self.rank is not None and self.world_size is not None:
            return _checked(self.rank, self.world_size, "rank=/world_size=")
        known = _process_group() or self._captured or _environment()
        if known is not None:
            rank = known[0] if self.rank is None else self.rank
            return _checked(rank, known[1] if self.world_size is None else self.world_size, "rank/world_size")
        if self.rank is None and self.world_size in (None, 1):
            return 0, 1
        given, missing = ("rank", "world_size") if self.world_size is None else ("world_size", "rank")
        raise RuntimeError(
            f"AugmentedDataset was given {given}= but not {missing}=, and neither torch.distributed nor the "
            "RANK/WORLD_SIZE environment says it: pass both rank= and world_size="
        )

    def __getstate__(self) -> dict[str, Any]:
        """DataLoader pickles the dataset into spawn and forkserver workers here, in the trainer process, where the
        process group is initialised; the workers are not part of it. The topology resolved now travels with the
        dataset. When it cannot be known here either, the worker resolves it again and raises."""
        state = {**self.__dict__, "_streams": None}  # threads and connections stay in this process
        try:
            state["_captured"] = self._ranks()
        except RuntimeError:
            state["_captured"] = None
        return state

    def _topology(self) -> tuple[int, int]:
        rank, world = self._ranks()
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker is not None else (1, 0)
        return rank * workers + worker_id, world * workers

    def batches_per_epoch(self, num_workers: int = 0) -> int:
        """Batches this rank receives per epoch, over all of its ``num_workers`` DataLoader workers."""
        workers = max(num_workers, 1)
        remaining = len(remaining_positions(self.size, self._skipped(self.epoch)))
        return batches_per_shard(remaining, self._ranks()[1] * workers, self.batch_size, self.drop_last) * workers

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor] | dict[str, Any]]:
        epoch = self.epoch
        shard_index, shard_count = self._topology()
        key = f"{shard_index}/{shard_count}"
        request = EpochRequest(
            spec=self.spec,
            batch_size=self.batch_size,
            seed=self.seed,
            epoch=epoch,
            shard_index=shard_index,
            shard_count=shard_count,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
            skip=self._skipped(epoch),
            encoding=self.encoding,
            quality=self.quality,
        )
        request = request.model_copy(
            update={"start_batch": self._resume_point(epoch, key, shard_batch_count(self.size, request))}
        )
        for batch in self._epoch_streams().batches(request):
            self._delivered[key] = batch.number + 1
            yield self._tensors(batch)

    def _epoch_streams(self) -> EpochStreams:
        """This process's streams (a DataLoader worker has its own: they hold threads and connections)."""
        if self._streams is None or self._streams[0] != os.getpid():
            self._streams = os.getpid(), EpochStreams(self._stream, self.prefetch, self.next_epoch_ahead)
        return self._streams[1]

    def _stream(self, request: EpochRequest) -> Iterator[EpochBatch]:
        allocate = shared_bytes if get_worker_info() is not None else empty_bytes
        with self._client() as client:
            yield from EpochBatches(client, self.dataset, request, retries=self.retries, allocate=allocate)

    def _tensors(self, batch: EpochBatch) -> tuple[torch.Tensor, torch.Tensor] | dict[str, Any]:
        images = as_tensor(batch.images).permute(0, 3, 1, 2)  # NCHW view of NHWC memory (channels-last)
        if self.output == "float":
            images = images.float().div_(255.0)
            if self.mean is not None and self.std is not None:
                mean = torch.tensor(self.mean).view(1, -1, 1, 1)
                std = torch.tensor(self.std).view(1, -1, 1, 1)
                images = images.sub_(mean).div_(std)
        if batch.targets is not None:
            return target_batch(images, batch, self.padded_targets)
        return images, torch.from_numpy(batch.labels)

    def state_dict(self) -> dict[str, Any]:
        delivered = dict(self._delivered) if self._delivered_epoch == self.epoch else {}
        skip = self._skipped(self.epoch)
        return {
            "epoch": self.epoch,
            "seed": self.seed,
            "delivered": delivered,
            "skip": skip.model_dump() if skip is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume with the same topology (the state of this dataset in one worker, as StatefulDataLoader keeps it)."""
        if state["seed"] != self.seed:
            raise ValueError(f"state was saved with seed {state['seed']}, this dataset has seed {self.seed}")
        epoch = int(state["epoch"])
        self.set_epoch(epoch)
        self._delivered_epoch = epoch
        self._delivered = {str(key): int(value) for key, value in state["delivered"].items()}
        skip = state.get("skip")
        self._skip = (epoch, Progress.model_validate(skip)) if skip is not None else None

    def progress(self, *saved: dict[str, Any]) -> dict[str, Any]:
        """The epoch's progress, free of any topology, from what every rank saved: StatefulDataLoader
        ``state_dict()``s (one per rank) or this dataset's own ``state_dict()``s. JSON; ``torch.save`` it."""
        return epoch_progress(
            saved,
            size=self.size,
            batch_size=self.batch_size,
            seed=self.seed,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
        )

    def load_progress(self, progress: dict[str, Any]) -> None:
        """Resume an epoch on this dataset's topology, whatever it was when ``progress`` was taken: the epoch's
        remaining samples are split among this run's shards. Call before building the DataLoader."""
        epoch, skip = read_progress(progress, seed=self.seed, shuffle=self.shuffle, drop_last=self.drop_last)
        self.set_epoch(epoch)
        self._delivered_epoch, self._delivered = epoch, {}
        self._skip = (epoch, skip)


def _process_group() -> tuple[int, int] | None:
    """(rank, world size) of the default process group, if this process has one (a forked worker inherits it)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return None


def _environment() -> tuple[int, int] | None:
    """(rank, world size) from the ``RANK``/``WORLD_SIZE`` variables torchrun sets, None when neither is set."""
    rank, world = os.environ.get("RANK") or None, os.environ.get("WORLD_SIZE") or None
    if rank is None and world is None:
        return None
    if world is None:
        raise RuntimeError(
            f"RANK={rank} is set but WORLD_SIZE is not, and torch.distributed is not initialised in this process: "
            "AugmentedDataset cannot tell how many ranks share the epoch. Set WORLD_SIZE, initialise the process "
            "group before iterating, or pass rank= and world_size="
        )
    size = _integer("WORLD_SIZE", world)
    if rank is None:
        if size == 1:
            return 0, 1
        raise RuntimeError(
            f"WORLD_SIZE={world} is set but RANK is not, and torch.distributed is not initialised in this process: "
            "AugmentedDataset cannot tell which rank this is and will not guess (a wrong guess delivers samples "
            "twice or never). Set RANK, initialise the process group before iterating, or pass rank= and world_size="
        )
    return _checked(_integer("RANK", rank), size, "RANK/WORLD_SIZE")


def _integer(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise RuntimeError(f"{name}={value!r} is not an integer") from None


def _checked(rank: int, world: int, source: str) -> tuple[int, int]:
    if world < 1 or not 0 <= rank < world:
        raise RuntimeError(f"{source} gives rank {rank} of {world}: a rank must be in [0, world size)")
    return rank, world
