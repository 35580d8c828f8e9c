"""The HTTP client: one ``httpx.Client`` (connection reuse), typed errors, streams parsed as they arrive."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from .connections import RESENT, RETRYABLE, open_stream, raise_for_error
from .epoch_batches import EpochBatches
from .protocol.datasets import Label, Layout, dataset_path
from .protocol.epochs import EpochRequest, ReplayRequest
from .protocol.errors import InternalServerError, ProtocolError, TransportError, stream_error
from .protocol.spec import Format, Spec
from .protocol.targets import ImageTargets, is_mask_member
from .protocol.wire import ERROR_MEMBER, MEDIA_TYPE_TAR, Body, Buffer, npy_parts, read_npy, read_tar
from .replicas import Replicas, parse_urls
from .uploads import folder_layout, upload_files, upload_layout

ImageInput = str | Path | bytes | np.ndarray | Any  # Any: a PIL.Image.Image (Pillow is optional here)
SpecInput = Spec | Mapping[str, Any] | str
TargetsInput = ImageTargets | Mapping[str, Any] | None


@dataclass
class AugmentedImage:
    """One variant: its encoded bytes, its metadata, the decoded image on demand, and its mask if it has one.

    Boxes, labels and keypoints that survived the ops are in ``meta`` (``boxes``, ``labels``, ``keypoints``,
    ``keypoint_labels``), in the spec's box format; :attr:`boxes` and :attr:`keypoints` give them as arrays."""

    name: str
    data: Buffer
    meta: dict[str, Any]
    mask_data: Buffer | None = field(default=None, repr=False)
    _image: np.ndarray | None = field(default=None, repr=False)

    @property
    def image(self) -> np.ndarray:
        """HxWx3 uint8 RGB. ``npy`` needs only numpy; png/jpeg/webp need Pillow (``pip install pillow``)."""
        if self._image is None:
            self._image = _decoded(self.name, self.data)
        return self._image

    @property
    def mask(self) -> np.ndarray | None:
        """HxW uint8 class ids, moved with the image; None when no mask was sent."""
        if self.mask_data is None:
            return None
        return _decoded(self.meta["mask"], self.mask_data, colour=False)

    @property
    def boxes(self) -> np.ndarray:
        """(k, 4) float boxes in the spec's box format (empty when none were sent or none survived)."""
        return np.array(self.meta.get("boxes", []), dtype=np.float64).reshape(-1, 4)

    @property
    def keypoints(self) -> np.ndarray:
        """(m, 2) float [x, y] keypoints that stayed on the image."""
        return np.array(self.meta.get("keypoints", []), dtype=np.float64).reshape(-1, 2)

    @property
    def seed(self) -> int:
        return int(self.meta["seed"])


class AugmentStream(Iterator[AugmentedImage]):
    """The variants of one ``augment`` call, parsed from the response as its bytes arrive.

    ``seed`` is the request's seed (the server's choice when none was given): pass it back to replay the call.
    Raises :class:`ProtocolError` if the stream ends early and the server's error if it reports one.
    """

    def __init__(self, body: Body, headers: Mapping[str, str], close: Callable[[], None]) -> None:
        self._body = body
        self._close = close
        self.seed = int(headers["x-augserve-seed"])
        self.count = int(headers["x-augserve-count"])
        self._members = self._parse()

    def __next__(self) -> AugmentedImage:
        return next(self._members)

    def close(self) -> None:
        self._close()

    def _parse(self) -> Iterator[AugmentedImage]:
        payload: tuple[str, bytearray] | None = None
        mask: bytearray | None = None
        received = 0
        try:
            for name, data in read_tar(self._body):
                if name == ERROR_MEMBER:
                    raise stream_error(json.loads(data))
                if name.endswith(".json"):
                    if payload is None:
                        raise ProtocolError(f"metadata {name} arrived without its image")
                    received += 1
                    yield AugmentedImage(payload[0], payload[1], json.loads(data), mask)
                    payload, mask = None, None
                elif is_mask_member(name):
                    mask = data
                else:
                    payload = (name, data)
            if received != self.count:
                raise ProtocolError(f"the server announced {self.count} variants and sent {received}")
        finally:
            self.close()


class Client:
    """A client for one augserve server.

    >>> client = Client("http://127.0.0.1:8000")
    >>> for variant in client.augment(["photo.jpg"], spec, variants=4, seed=7):
    ...     variant.image.shape, variant.meta["applied"]
    """

    def __init__(
        self,
        base_url: str | Sequence[str] = "http://127.0.0.1:8000",
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        api_key: str | None = None,
    ) -> None:
        """``base_url``: one server, or several serving the same datasets (a list, or a comma-separated string):
        requests and streams then fail over between them (see :mod:`augserve_client.replicas`). ``api_key``
        (default: ``AUGSERVE_API_KEY``) is sent on every request and stream, for servers that have keys."""
        headers = dict(headers or {})
        api_key = api_key or os.environ.get("AUGSERVE_API_KEY")
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.replicas = Replicas(parse_urls(base_url), timeout, transport, headers or None)
        first = self.replicas.all[0]
        self.base_url, self.http, self.streams = first.url, first.http, first.streams

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.replicas.close()

    @contextmanager
    def stream(
        self, method: str, path: str, *, prefer: int = 0, dataset: str | None = None, **kwargs: Any
    ) -> Iterator[tuple[Body, Mapping[str, str]]]:
        """A streamed response, status checked: ``(body, headers)``; the wire readers read ``body``.

        With several endpoints it comes from the first healthy one from ``prefer`` on (one that serves
        ``dataset`` as the others do); one that fails to answer, or whose stream breaks, is marked down."""
        failure: Exception = TransportError("no endpoint answered")
        for replica in self.replicas.order(prefer):
            with ExitStack() as stack:
                try:
                    if dataset is not None:
                        self.replicas.check(replica, dataset)
                    opened = stack.enter_context(open_stream(replica.http, replica.streams, method, path, **kwargs))
                except RETRYABLE as error:
                    self.replicas.failed(replica)
                    failure = error
                    continue
                try:
                    yield opened
                except RETRYABLE:
                    self.replicas.failed(replica)
                    raise
                self.replicas.succeeded(replica)
                return
        raise failure

    def augment(
        self,
        images: Iterable[ImageInput],
        spec: SpecInput | None = None,
        *,
        variants: int = 1,
        seed: int | None = None,
        format: Format | None = "npy",
        masks: Iterable[ImageInput] | None = None,
        targets: Sequence[TargetsInput] | None = None,
    ) -> AugmentStream:
        """Stream ``variants`` augmented versions of each image.

        ``images``: paths, encoded bytes, PIL images, or HxW[xC] uint8 numpy arrays (sent raw as .npy).
        ``format`` overrides the spec's output format; the default ``npy`` needs no decoding here. Pass
        ``None`` to keep the spec's own. The spec is validated locally before anything is sent.

        ``masks`` (one per image, HxW class ids: arrays, paths or bytes) and ``targets`` (one per image:
        ``{"boxes": [...], "labels": [...], "keypoints": [...]}`` or None) move with their image, by the same
        random draw; the spec's ``targets`` section says how (docs/targets.md).
        """
        checked = _with_format(as_spec(spec), format)
        files = [("images", _upload(index, image)) for index, image in enumerate(images)]
        files += [("masks", _upload(index, mask)) for index, mask in enumerate(masks or [])]
        data: dict[str, str] = {"spec": checked.model_dump_json(), "variants": str(variants)}
        if seed is not None:
            data["seed"] = str(seed)
        if targets is not None:
            data["targets"] = json.dumps([_targets_payload(entry) for entry in targets])
        stack = ExitStack()
        body, headers = stack.enter_context(self.stream("POST", "/v1/augment", files=files, data=data))
        if headers.get("content-type") != MEDIA_TYPE_TAR:
            stack.close()
            raise ProtocolError(f"expected a tar stream, got {headers.get('content-type')}")
        return AugmentStream(body, headers, stack.close)

    def validate_spec(self, spec: SpecInput) -> dict[str, Any]:
        """The server's normalised form of ``spec`` (raises the server's error if it is invalid)."""
        if isinstance(spec, str):  # sent as it is: the server names what is wrong with the text
            return self.request(
                "POST", "/v1/specs/validate", content=spec, headers={"content-type": "application/json"}
            ).json()
        return self.request("POST", "/v1/specs/validate", json=_spec_payload(spec)).json()

    def ops(self) -> dict[str, Any]:
        return self.request("GET", "/v1/ops").json()

    # --- datasets ----------------------------------------------------------------------------------------

    def upload_dataset(
        self,
        name: str | None,
        files: Sequence[str | Path],
        labels: Sequence[Label] | None = None,
        progress: bool = True,
    ) -> dict[str, Any]:
        """Register local files as dataset ``name``; only files the server lacks are uploaded."""
        return upload_files(self, name, [Path(file) for file in files], labels, progress)

    def upload_folder(
        self, name: str | None, folder: str | Path, progress: bool = True, layout: Layout | None = None
    ) -> dict[str, Any]:
        """Register a local folder, uploading only what the server lacks. ``layout`` (by default, told from the
        folder: :func:`folder_layout`): ``imagefolder`` (folder/<class>/<image>; labels are class names, sorted),
        ``segmentation`` (images/ and masks/, matched by stem) or ``coco`` (images and one instances_*.json)."""
        folder = Path(folder)
        return upload_layout(self, name, folder, layout or folder_layout(folder), progress)

    def register_folder(
        self, name: str, folder: str, layout: Layout = "imagefolder", annotations: str | None = None
    ) -> dict[str, Any]:
        """Register a folder that lives on the server, under its data root (nothing is uploaded), in ``layout``;
        ``annotations`` names a coco folder's instances file when it holds several."""
        body = {"name": name, "folder": folder, "layout": layout, "annotations": annotations}
        return self.request("POST", "/v1/datasets", json={k: v for k, v in body.items() if v is not None}).json()

    def datasets(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/datasets").json()["datasets"]

    def describe(self, name: str) -> dict[str, Any]:
        return self.request("GET", dataset_path(name)).json()

    def replay(
        self,
        dataset: str,
        spec: SpecInput | None = None,
        *,
        index: int,
        seed: int = 0,
        epoch: int = 0,
        format: Format | None = "npy",
    ) -> AugmentedImage:
        """Sample ``index``'s variant exactly as ``epoch(dataset, spec, seed=seed, epoch=epoch)`` delivered it
        (byte for byte, whatever shard or batch carried it), with what was applied in ``meta["applied"]``: for
        "why does batch 812 look wrong?" without streaming the epoch again. ``index`` is the dataset index a batch
        lists in ``indices``."""
        checked = _with_format(as_spec(spec), format)
        body = ReplayRequest(spec=checked, seed=seed, epoch=epoch, index=index).model_dump(mode="json")
        response = self.request("POST", dataset_path(dataset) + "/replay", json=body)
        members = list(read_tar(io.BytesIO(response.content)))
        meta = next(json.loads(data) for name, data in members if name.endswith(".json"))
        mask = next((data for name, data in members if is_mask_member(name)), None)
        image, data = next(
            (name, data) for name, data in members if not (name.endswith(".json") or is_mask_member(name))
        )
        return AugmentedImage(image, data, meta, mask)

    def delete_dataset(self, name: str) -> None:
        self.request("DELETE", dataset_path(name))

    def epoch(self, dataset: str, spec: SpecInput | None = None, *, retries: int = 8, **request: Any) -> EpochBatches:
        """The batches of one epoch shard as numpy arrays (retried and resumed; see ``EpochRequest``).

        ``encoding="zstd"`` (lossless) or ``encoding="jpeg", quality=90`` (lossy) cut the bytes on the wire for
        some CPU on both ends; the default ``raw`` suits loopback (docs/wire-format.md#choosing-an-encoding)."""
        return EpochBatches(self, dataset, EpochRequest(spec=as_spec(spec), **request), retries=retries)

    def health(self) -> bool:
        try:
            return self.http.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One plain request; errors become typed exceptions. With several endpoints, one that cannot be
        reached or answers 5xx is marked down and the next is asked (every augserve request is idempotent)."""
        failure: Exception | None = None
        for replica in self.replicas.order():
            try:
                try:
                    response = replica.http.request(method, path, **kwargs)
                except httpx.TransportError as error:
                    raise TransportError(f"{method} {replica.url}{path}: {error}") from error
                if not _already_done(method, response, resent=failure is not None):
                    raise_for_error(response.status_code, response.read)
            except (TransportError, InternalServerError) as error:
                self.replicas.failed(replica)
                failure = error
                continue
            self.replicas.succeeded(replica)
            return response
        raise failure or TransportError("no endpoint answered")


def _already_done(method: str, response: httpx.Response, resent: bool) -> bool:
    """A DELETE sent again (to the next endpoint, or to a balancer after its 502) that finds nothing to delete:
    the endpoint that failed may have deleted it before its answer was lost, and gone is what was asked."""
    resent = resent or bool(response.extensions.get(RESENT))
    return resent and method.upper() == "DELETE" and response.status_code == 404


def as_spec(spec: SpecInput | None) -> Spec:
    if spec is None:
        return Spec()
    if isinstance(spec, Spec):
        return spec
    return Spec.model_validate_json(spec) if isinstance(spec, str) else Spec.model_validate(dict(spec))


def _with_format(spec: Spec, format: Format | None) -> Spec:
    """``spec`` with its output format replaced (None: kept)."""
    if format is None:
        return spec
    return spec.model_copy(update={"output": spec.output.model_copy(update={"format": format})})


def _spec_payload(spec: SpecInput) -> Any:
    return spec.model_dump(mode="json") if isinstance(spec, Spec) else dict(spec)


def _upload(index: int, image: ImageInput) -> tuple[str, Buffer | io.BufferedReader, str]:
    if isinstance(image, str | Path):
        return Path(image).name, Path(image).read_bytes(), "application/octet-stream"
    if isinstance(image, bytes | bytearray | memoryview):
        return f"image{index:05d}", bytes(image), "application/octet-stream"
    if isinstance(image, np.ndarray):
        return f"image{index:05d}.npy", b"".join(npy_parts(image)), "application/x-npy"
    if hasattr(image, "save"):  # a PIL image: PNG keeps it lossless
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)
        return f"image{index:05d}.png", buffer.getvalue(), "image/png"
    raise TypeError(f"cannot upload {type(image).__name__}: give a path, bytes, a numpy array or a PIL image")


def _targets_payload(entry: TargetsInput) -> dict[str, Any] | None:
    """One image's targets, validated here (a bad box fails before anything is sent) and as JSON."""
    if entry is None:
        return None
    checked = entry if isinstance(entry, ImageTargets) else ImageTargets.model_validate(dict(entry))
    return checked.model_dump(mode="json", exclude_none=True)


def _decoded(name: str, data: Buffer, colour: bool = True) -> np.ndarray:
    """A variant's member as an array: ``npy`` needs only numpy, png/jpeg/webp need Pillow."""
    if name.endswith(".npy"):
        return read_npy(data)
    try:
        from PIL import Image
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("decoding png/jpeg/webp variants needs Pillow: pip install pillow") from error
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB") if colour else image)
