"""One sample's variant made again, without streaming its epoch: ``POST /v1/datasets/{name}/replay``.

"Why does batch 812 look wrong?" A batch frame lists its samples' dataset indices; a sample's variant depends
only on the dataset, the spec, the request's seed, the epoch and that index (``sample_seed``), not on the shard,
the batch or the worker that made it. So it can be made again on its own: from the same source pixels (the
same decode, through the same caches, at the same scale in ``fast`` mode: :func:`.sources.variant_source`)
by the same pipeline, byte for byte what the stream carried, and this time with what was applied.
"""

from __future__ import annotations

from augserve_client.protocol.epochs import ReplayRequest, sample_seed
from augserve_client.protocol.errors import ErrorCode
from augserve_client.protocol.wire import END_OF_ARCHIVE, Buffer, json_bytes, tar_member

from . import codecs
from .errors import ServiceError
from .preflight import check_spec
from .sources import variant_source
from .state import AppState
from .store import Manifest


def replay(state: AppState, manifest: Manifest, request: ReplayRequest) -> list[Buffer]:
    """The variant as a tar of two members, ``{index:05d}.{ext}`` and its ``.json``, like ``/v1/augment``'s."""
    spec = request.spec
    check_spec(spec, state.settings.max_pixels)
    count = len(manifest.keys)
    if request.index >= count:
        message = f"index {request.index} is past the dataset's last sample ({count} samples, from 0)"
        raise ServiceError(ErrorCode.NOT_FOUND, message, field="index")  # no such sample, as for a dataset
    seed = sample_seed(request.seed, request.epoch, request.index)
    pipeline = state.pipelines.get(spec)
    variant = pipeline(variant_source(state, manifest, pipeline, request.index, seed), seed)
    stem = f"{request.index:05d}"
    meta = {
        "key": stem,
        "dataset": manifest.name,
        "index": request.index,
        "label": manifest.labels[request.index],
        "epoch": request.epoch,
        "request_seed": request.seed,
        "seed": seed,
        "shape": list(variant.image.shape),
        "format": spec.output.format,
        "applied": variant.applied,
    }
    image = codecs.encode(variant.image, spec.output.format, spec.output.quality)
    members = [(f"{stem}.{codecs.EXTENSIONS[spec.output.format]}", image), (f"{stem}.json", [json_bytes(meta)])]
    return [*(part for name, data in members for part in tar_member(name, data)), END_OF_ARCHIVE]
