"""The spec playground (``/playground``) and the offline API docs (``/docs``, ``/redoc``), in a real browser.

Debian's Chromium driven by playwright, with every request that does not go to the test server aborted: what a
person sees on a machine without internet. The page is checked by what it shows: the grid of variants, a
tile's seed and parameters, the server's 422 next to the field it names, and exports the API accepts.
``AUGSERVE_PLAYGROUND_SCREENSHOT=docs/playground.png`` also saves the README's screenshot there.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from augserve.devserver import ServerProcess
from augserve.routes.playground import FILES
from augserve_client import Spec, derive_seed
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
# Root needs --no-sandbox; the rest keeps Chromium from calling home (this machine refuses outside connections).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TILES_READY = """([count, width, height]) => {
    const grid = document.querySelector("#grid");
    const images = [...grid.querySelectorAll(".tile img")];
    return grid.dataset.state === "ready" && images.length === count
        && images.every((image) => image.complete && image.naturalWidth === width && image.naturalHeight === height);
}"""


def browser_test(test: Any) -> Any:
    """Slow (a browser, a page, a few requests), and skipped, saying why, where Debian's Chromium is absent."""
    absent = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: apt-get install chromium")
    return pytest.mark.slow(absent(test))


def shown(value: Any) -> str:
    """A JSON value as the page writes it (JavaScript drops the ``.0`` of whole floats)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return f"[{', '.join(shown(item) for item in value)}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {shown(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


# ---- the static files, without a browser ----------------------------------------------------------------


def test_the_package_ships_the_page_and_its_photos() -> None:
    page = {"index.html", "playground.css", "playground.js", "controls.js", "exports.js", "tar.js"}
    assert page | {"photos/china.jpg", "photos/flower.jpg", "photos/ATTRIBUTION.md"} <= set(FILES)
    for name in ("china.jpg", "flower.jpg"):
        assert FILES[f"photos/{name}"].read_bytes() == (ROOT / "examples" / "photos" / name).read_bytes()


def test_the_playground_files_are_served_and_nothing_else(server: ServerProcess) -> None:
    redirect = httpx.get(f"{server.url}/playground")
    assert redirect.status_code == 308 and redirect.headers["location"] == "playground/"
    page = httpx.get(f"{server.url}/playground/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="playground.js">' in page.text
    script = httpx.get(f"{server.url}/playground/playground.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert httpx.get(f"{server.url}/playground/photos/flower.jpg").headers["content-type"] == "image/jpeg"
    for path in ("nope.js", "..%2F..%2Fapp.py", "%2e%2e/routes/playground.py", "photos/../../app.py"):
        missing = httpx.get(f"{server.url}/playground/{path}")
        assert missing.status_code == 404 and missing.json()["code"] == "not_found", path
    assert "/playground" not in json.dumps(httpx.get(f"{server.url}/openapi.json").json()["paths"])


def test_the_docs_pages_name_no_cdn(server: ServerProcess) -> None:
    for page in ("docs", "redoc"):
        html = httpx.get(f"{server.url}/{page}").text
        assert "cdn." not in html and "fonts.googleapis" not in html, page
        assert "/static-offline-docs/" in html, page


# ---- in the browser --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright  # a dev dependency; imported here so collection never fails

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Offline:
    """A browser page that can reach only the test server: every other request is aborted and remembered."""

    def __init__(self, browser: Any, server: ServerProcess) -> None:
        self.origin = server.url
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(viewport={"width": 1440, "height": 960})
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _route(self, route: Any) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob") or f"{parts.scheme}://{parts.netloc}" == self.origin:
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()


@pytest.fixture
def offline(browser: Any, server: ServerProcess) -> Iterator[Offline]:
    session = Offline(browser, server)
    yield session
    session.context.close()
    # ReDoc's sidebar footer links its vendor's logo from their CDN, whatever the options: a missing picture.
    wanted = [url for url in session.blocked if url != REDOC_LOGO]
    assert not wanted, f"the page asked for outside resources: {wanted}"
    assert not session.errors, f"the page's script failed: {session.errors}"


@pytest.fixture
def playground(offline: Offline) -> Any:
    page = offline.page
    page.goto(f"{offline.origin}/playground")
    page.wait_for_function(TILES_READY, arg=[8, 224, 224], timeout=30_000)
    return page


def set_pair(page: Any, field: str, first: object, second: object) -> None:
    inputs = page.locator(f'[data-field="{field}"] .pair input')
    inputs.nth(0).fill(str(first))
    inputs.nth(1).fill(str(second))


def spec_in_editor(page: Any) -> dict[str, Any]:
    return json.loads(page.input_value("#spec-json"))


def export(page: Any, kind: str) -> str:
    page.click(f'[data-export="{kind}"]')
    return page.inner_text("#export-text")


def validate(server: ServerProcess, body: str | bytes) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/specs/validate", content=body, timeout=10)


@browser_test
def test_the_grid_follows_the_spec_and_a_tile_shows_its_draws(playground: Any, server: ServerProcess) -> None:
    page = playground
    assert page.inner_text("#status").startswith("8 variants of flower.jpg · seed 7")

    # A control changes the JSON and the grid: a 96x128 crop, a wider rotation, five variants.
    set_pair(page, "spec.ops[2].size", 96, 128)
    set_pair(page, "spec.ops[1].angle", -40, 40)
    page.fill("#variants", "5")
    page.wait_for_function(TILES_READY, arg=[5, 128, 96], timeout=20_000)
    spec = spec_in_editor(page)
    assert spec["ops"][2]["size"] == [96, 128] and spec["ops"][1]["angle"] == [-40, 40]
    for index in range(5):
        tile = page.locator(f'#grid .tile[data-variant="{index}"]')
        box = tile.bounding_box()
        assert box["width"] >= 140 and abs(box["width"] - box["height"]) < 2  # square tiles, a readable size
        assert tile.get_attribute("data-shape") == "96x128x3"
        assert tile.get_attribute("data-seed") == str(derive_seed(7, 0, index))

    # A tile shows its seed and what was applied: the same draws as the API's own metadata for that variant.
    page.click('#grid .tile[data-variant="3"]')
    seeds = page.inner_text("#detail-seeds")
    assert str(derive_seed(7, 0, 3)) in seeds and "00000_003" in seeds
    form = {"spec": json.dumps(spec), "variants": "5", "seed": "7"}
    files = {"images": ("flower.jpg", (ROOT / "examples" / "photos" / "flower.jpg").read_bytes())}
    response = httpx.post(f"{server.url}/v1/augment", data=form, files=files, timeout=30)
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r|") as archive:
        metas = {m.name: json.load(archive.extractfile(m)) for m in archive if m.name.endswith(".json")}
    applied = metas["00000_003.json"]["applied"]
    rows = page.locator("#detail-applied tbody tr").all_inner_texts()
    assert len(rows) == len(applied)
    for row, entry in zip(rows, applied, strict=True):
        assert entry["op"] in row
        drawn = {k: v for k, v in entry.items() if k not in {"op", "op_index", "transform"}}
        for key, value in drawn.items():
            assert f"{key} {shown(value)}" in row, (row, entry)

    # Fresh seeds, then pin one: the grid keeps that request seed while the spec changes.
    page.fill("#seed", "")
    page.wait_for_function("() => !/seed 7 /.test(document.querySelector('#status').textContent)")
    page.wait_for_function(TILES_READY, arg=[5, 128, 96])
    page.click('#grid .tile[data-variant="1"]')
    request_seed = page.locator("#detail-seeds dd").nth(1).inner_text()
    page.click("#pin")
    assert page.input_value("#seed") == request_seed
    assert page.locator("#grid .tile.pinned").get_attribute("data-variant") == "1"
    pinned_seed = page.get_attribute('#grid .tile[data-variant="1"]', "data-seed")
    assert pinned_seed == str(derive_seed(int(request_seed), 0, 1))
    set_pair(page, "spec.ops[2].size", 64, 64)
    page.wait_for_function(TILES_READY, arg=[5, 64, 64], timeout=20_000)
    assert page.get_attribute('#grid .tile[data-variant="1"]', "data-seed") == pinned_seed
    assert f"seed {request_seed}" in page.inner_text("#status")

    target = os.environ.get("AUGSERVE_PLAYGROUND_SCREENSHOT")
    if target:  # the README's picture: the starting spec with one tile opened
        set_pair(page, "spec.ops[2].size", 224, 224)
        set_pair(page, "spec.ops[1].angle", -15, 15)
        page.fill("#variants", "8")
        page.fill("#seed", "7")
        page.wait_for_function(TILES_READY, arg=[8, 224, 224], timeout=20_000)
        page.click('#grid .tile[data-variant="0"]')
        shot = Image.open(io.BytesIO(page.screenshot(full_page=True)))
        shot.quantize(256, method=Image.Quantize.MEDIANCUT).save(ROOT / target, optimize=True)  # a third the bytes


@browser_test
def test_the_servers_422_is_shown_next_to_the_field_it_names(playground: Any, server: ServerProcess) -> None:
    page = playground
    # Typed into the JSON editor: the controls follow, and the server's refusal lands on the angle's row.
    text = page.input_value("#spec-json").replace('"angle": [-15, 15]', '"angle": [10, 5]')
    page.fill("#spec-json", text)
    error = page.locator('[data-field="spec.ops[1].angle"] .field-error')
    error.wait_for(timeout=20_000)
    expected = validate(server, text)
    assert expected.status_code == 422 and expected.json()["field"] == "spec.ops[1].angle"
    assert error.inner_text() == expected.json()["errors"][0]["message"]
    assert "min must be <= max" in error.inner_text()
    angle = page.locator('[data-field="spec.ops[1].angle"] .pair input')
    assert [angle.nth(0).input_value(), angle.nth(1).input_value()] == ["10", "5"]
    assert page.inner_text("#json-errors").startswith("spec.ops[1].angle: ")
    assert page.get_attribute("#grid", "data-state") == "error"

    # Fixed from the controls: the error goes, the grid comes back.
    set_pair(page, "spec.ops[1].angle", -5, 5)
    page.wait_for_function(TILES_READY, arg=[8, 224, 224], timeout=20_000)
    assert page.locator(".field-error").count() == 0 and spec_in_editor(page)["ops"][1]["angle"] == [-5, 5]

    # Not only spec errors: the variants limit (16 on the test server) is refused next to the variants field.
    page.fill("#variants", "17")
    page.locator('[data-field="variants"] .field-error').wait_for(timeout=20_000)
    assert "max_variants=16" in page.inner_text('[data-field="variants"] .field-error')

    # Text that is not JSON: the server's own message, under the editor; the controls say they are stale.
    page.fill("#variants", "2")
    page.fill("#spec-json", '{"ops": [')
    page.wait_for_function("() => document.querySelector('#json-errors').textContent.includes('not valid JSON')")
    assert page.is_visible("#controls-note")


@browser_test
def test_the_exports_are_specs_the_api_accepts(playground: Any, server: ServerProcess, tmp_path: Path) -> None:
    page = playground
    # Edit through the controls: rotate by right angles, shift in pixels, an added reflect, JPEG output.
    page.select_option('[data-field="spec.ops[1]"] select[aria-label="kind"]', "right_angles")
    page.uncheck('[data-field="spec.ops[1].right_angles"] input >> nth=1')
    page.select_option('[data-field="spec.ops[3].unit"] select', "pixels")
    set_pair(page, "spec.ops[3].x", -8, 8)
    page.select_option("#new-op", "reflect")
    page.click("#add-op")
    page.check('[data-field="spec.ops[4].vertical"] input')
    page.select_option('[data-field="spec.output.format"] select', "jpeg")
    page.fill('[data-field="spec.output.quality"] input[type="number"]', "70")
    page.fill("#variants", "3")
    page.wait_for_function(TILES_READY, arg=[3, 224, 224], timeout=20_000)
    edited = spec_in_editor(page)
    assert edited["ops"][1] == {"op": "rotate", "p": 0.5, "right_angles": [90, 270]}
    assert edited["ops"][3]["unit"] == "pixels" and edited["ops"][4]["vertical"] is True
    assert edited["output"] == {"format": "jpeg", "quality": 70}

    as_json = export(page, "json")
    normalised = validate(server, as_json)
    assert normalised.status_code == 200, normalised.text
    assert normalised.json() == validate(server, json.dumps(edited)).json()

    as_python = export(page, "python")
    assert as_python.startswith("from augserve_client import Crop, Output, Reflect, Rotate, Shift, Spec\n")
    assert "Rotate(p=0.5, right_angles=[90, 270])" in as_python and 'Crop(mode="random_resized"' in as_python
    namespace: dict[str, Any] = {}
    exec(compile(as_python, "playground export", "exec"), namespace)
    assert isinstance(namespace["spec"], Spec) and namespace["spec"].model_dump(mode="json") == normalised.json()

    as_curl = export(page, "curl")
    assert as_curl.startswith(f"mkdir -p variants && curl -sS --fail-with-body {server.url}/v1/augment \\\n")
    assert "-F images=@flower.jpg -F variants=3 -F seed=7" in as_curl
    if shutil.which("curl") and shutil.which("tar"):
        shutil.copy(ROOT / "examples" / "photos" / "flower.jpg", tmp_path)
        subprocess.run(["bash", "-c", as_curl], cwd=tmp_path, check=True, capture_output=True, timeout=60)
        names = sorted(path.name for path in (tmp_path / "variants").iterdir())
        assert names == [f"00000_{v:03d}.{ext}" for v in range(3) for ext in ("jpg", "json")]
        seeds = [json.loads((tmp_path / "variants" / f"00000_{v:03d}.json").read_text())["seed"] for v in range(3)]
        shown_seeds = [page.get_attribute(f'#grid .tile[data-variant="{v}"]', "data-seed") for v in range(3)]
        assert [str(seed) for seed in seeds] == shown_seeds


@browser_test
@pytest.mark.parametrize(("path", "rendered"), [("docs", "#swagger-ui .opblock"), ("redoc", "redoc [data-section-id]")])
def test_the_api_docs_render_offline(offline: Offline, path: str, rendered: str) -> None:
    page = offline.page
    page.goto(f"{offline.origin}/{path}")
    page.locator(rendered).first.wait_for(timeout=30_000)
    assert page.get_by_text("/v1/augment").count() >= 1
    if path == "docs":
        operations = page.locator("#swagger-ui .opblock-summary-path").all_inner_texts()
        assert {"/v1/augment", "/v1/specs/validate", "/v1/ops"} <= {op.strip() for op in operations}


READ_TAR = """async (cuts) => {
    const { tarMembers } = await import("./tar.js");
    const form = new FormData();
    form.append("images", await (await fetch("photos/china.jpg")).blob(), "china.jpg");
    form.append("variants", "2");
    const bytes = new Uint8Array(await (await fetch("../v1/augment", { method: "POST", body: form })).arrayBuffer());
    const results = [];
    for (const cut of cuts) {
        const names = [];
        try {
            const stream = new Blob([bytes.subarray(0, bytes.length - cut)]).stream();
            for await (const member of tarMembers(stream)) names.push(member.name);
            results.push({ names, error: null });
        } catch (error) {
            results.push({ names, error: error.message });
        }
    }
    return results;
}"""


@browser_test
def test_the_page_reads_only_whole_tar_streams(playground: Any) -> None:
    """A stream cut anywhere is an error, never a shorter tar: at a member boundary, inside the end marker,
    inside a member (2 variants of a photo with no ops: the last member's JSON is under 512 bytes)."""
    cuts = {0: None, 1024: "without the tar end-of-archive marker", 512: "inside the tar end-of-archive marker"}
    cuts[1300] = "the stream was cut inside 00000_001.json"
    results = playground.evaluate(READ_TAR, list(cuts))
    whole = ["00000_000.png", "00000_000.json", "00000_001.png", "00000_001.json"]
    for (cut, error), result in zip(cuts.items(), results, strict=True):
        assert result["names"] == (whole[:3] if cut == 1300 else whole), cut
        assert result["error"] == error if error is None else error in result["error"], (cut, result)
