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
from augserve_client.protocol.wire import END_OF_ARCHIVE, Buffer, tar_member

from .errors import ServiceError
from .preflight import check_fits, check_spec
from .sources import sample_targets, variant_source
from .state import AppState
from .store import Manifest
from .variants import variant_members


def replay(state: AppState, manifest: Manifest, request: ReplayRequest) -> list[Buffer]:
    """The variant as a tar like ``/v1/augment``'s: ``{index:05d}.{ext}``, its mask when the dataset has masks
    (``{index:05d}.mask.png``), and its ``.json`` (with the boxes and keypoints that survived)."""
    spec = request.spec
    check_spec(spec, state.settings.max_pixels)
    count = len(manifest.keys)
    if request.index >= count:
        message = f"index {request.index} is past the dataset's last sample ({count} samples, from 0)"
        # 409, not 404: the dataset the URL names is there; the body's index conflicts with its length
        raise ServiceError(ErrorCode.CONFLICT, message, field="index")
    check_fits(spec, *manifest.sizes[request.index], f"sample {request.index} of {manifest.name!r}")
    seed = sample_seed(request.seed, request.epoch, request.index)
    pipeline = state.pipelines.get(spec, manifest.has_targets)
    source = variant_source(state, manifest, pipeline, request.index, seed)
    targets = sample_targets(state, manifest, request.index, spec.targets) if manifest.has_targets else None
    variant = pipeline(source, seed, targets)
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
    members = variant_members(stem, variant, spec.output, meta)
    return [*(part for name, data in members for part in tar_member(name, data)), END_OF_ARCHIVE]
