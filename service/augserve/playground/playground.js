// The augserve playground: a spec edited as controls and as JSON, kept in sync, and a grid of real variants
// from the server's own POST /v1/augment. Plain modules, no framework, no build step; the page calls only the
// public API (GET /v1/ops for the op schemas, POST /v1/augment), so every error it shows is the server's own.

import { el, renderControls } from "./controls.js";
import { curlLine, formatSpec, inline, isObject, pythonSpec } from "./exports.js";
import { tarMembers } from "./tar.js";

const API = new URL("../", document.baseURI); // the service's root, also behind a path prefix
const DEBOUNCE_MS = 250;
const BROWSER_FORMATS = new Set(["png", "jpeg", "webp"]); // what an <img> shows; npy is displayed as png
const MEDIA_TYPES = { png: "image/png", jpg: "image/jpeg", webp: "image/webp" };
const $ = (selector, root = document) => root.querySelector(selector);
const api = (path) => new URL(path, API).href;

const state = {
  schemas: {}, // op name -> JSON schema, plus "output"
  example: { ops: [] }, // the API's example spec: the page's first spec, and what "add op" copies
  spec: null, // the parsed JSON (null while the editor holds text that is not JSON)
  text: "",
  image: null, // {name, blob}
  controller: null, // the request in flight
  generation: 0,
  tiles: [], // per variant: {meta, seed, requestSeed, url}
  selected: null,
  pinned: null,
  exportKind: "json",
  timer: 0,
};

function authHeaders() {
  const key = $("#api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// ---- keeping the controls, the JSON and the exports in sync ---------------------------------------------

function changed(structural) {
  state.text = formatSpec(state.spec);
  $("#spec-json").value = state.text;
  if (structural) renderControls(state.spec, state.schemas, changed);
  renderExport();
  schedule();
}

function jsonEdited() {
  state.text = $("#spec-json").value;
  try {
    state.spec = JSON.parse(state.text);
  } catch {
    state.spec = null; // the server says what is wrong with it
  }
  renderControls(state.spec, state.schemas, changed);
  renderExport();
  schedule();
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(refresh, DEBOUNCE_MS);
}

// ---- the variants -----------------------------------------------------------------------------------------

// The spec as sent for display: the user's own text, except that npy (no <img> shows it) is asked as png.
function displaySpec() {
  if (state.spec === null) return { text: state.text, note: "" };
  const output = isObject(state.spec) ? state.spec.output : undefined;
  if (!isObject(output) || output.format === undefined || BROWSER_FORMATS.has(output.format)) {
    return { text: JSON.stringify(state.spec), note: "" };
  }
  const shown = { ...state.spec, output: { ...output, format: "png" } };
  return { text: JSON.stringify(shown), note: ` · shown as png (the spec says ${inline(output.format)})` };
}

async function refresh() {
  if (!state.image) return;
  state.controller?.abort();
  const controller = new AbortController();
  state.controller = controller;
  const current = () => state.controller === controller;
  const generation = ++state.generation;
  const { text, note } = displaySpec();
  const form = new FormData();
  form.append("images", state.image.blob, state.image.name);
  form.append("spec", text);
  form.append("variants", $("#variants").value.trim());
  const seed = $("#seed").value.trim();
  if (seed) form.append("seed", seed);
  const grid = $("#grid");
  grid.dataset.state = "loading";
  $("#status").textContent = "computing…";
  const started = performance.now();
  try {
    const request = { method: "POST", body: form, headers: authHeaders(), signal: controller.signal };
    const response = await fetch(api("v1/augment"), request);
    if (!response.ok) {
      const error = await readError(response);
      if (current()) showErrors(error);
      return;
    }
    clearErrors();
    const requestSeed = response.headers.get("X-Augserve-Seed");
    const count = Number(response.headers.get("X-Augserve-Count"));
    resizeGrid(count);
    const images = new Map();
    let received = 0;
    for await (const member of tarMembers(response.body)) {
      if (!current()) return;
      const key = member.name.replace(/\.[^.]+$/, "");
      if (member.name === "__error__.json") {
        showErrors(JSON.parse(new TextDecoder().decode(member.data)));
        return;
      }
      if (!member.name.endsWith(".json")) {
        const type = MEDIA_TYPES[member.name.split(".").pop()] || "application/octet-stream";
        images.set(key, new Blob([member.data], { type }));
        continue;
      }
      const json = new TextDecoder().decode(member.data);
      const meta = JSON.parse(json);
      // Seeds are 63-bit: JSON.parse would round them, so they are read from the text.
      const seedText = (json.match(/"seed":\s*(\d+)/) || [])[1] || String(meta.seed);
      showTile(meta.variant, { meta, seed: seedText, requestSeed, blob: images.get(key) });
      images.delete(key);
      received += 1;
    }
    if (received !== count) throw new Error(`the stream ended after ${received} of ${count} variants`);
    grid.dataset.state = "ready";
    grid.dataset.generation = String(generation);
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    $("#status").textContent = `${count} variants of ${state.image.name} · seed ${requestSeed} · ${seconds} s${note}`;
    if (state.selected !== null && state.selected < count) selectTile(state.selected);
    else closeDetails();
  } catch (error) {
    if (controller.signal.aborted || !current()) return;
    grid.dataset.state = "error";
    $("#status").textContent = `The request failed: ${error.message}`;
    $("#status").classList.add("error");
  }
}

async function readError(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (isObject(body) && body.message) return { status: response.status, ...body };
  } catch {
    // not JSON: a proxy's page
  }
  const message = text.slice(0, 200) || response.statusText;
  return { status: response.status, code: `http_${response.status}`, message };
}

function resizeGrid(count) {
  const grid = $("#grid");
  while (state.tiles.length > count) {
    const tile = state.tiles.pop();
    if (tile.url) URL.revokeObjectURL(tile.url);
    grid.lastElementChild.remove();
  }
  while (state.tiles.length < count) {
    const variant = state.tiles.length;
    state.tiles.push({});
    const attributes = { type: "button", class: "tile", "data-variant": String(variant) };
    grid.append(el("button", { ...attributes, onclick: () => selectTile(variant) },
      el("img", { alt: `variant ${variant}` }), el("span", { class: "caption", text: `#${variant}` })));
  }
  markTiles();
}

function markTiles() {
  for (const tile of $("#grid").children) {
    const variant = Number(tile.dataset.variant);
    tile.classList.toggle("pinned", variant === state.pinned);
    tile.classList.toggle("selected", variant === state.selected);
  }
}

function showTile(variant, tile) {
  const previous = state.tiles[variant];
  if (previous?.url) URL.revokeObjectURL(previous.url);
  tile.url = URL.createObjectURL(tile.blob);
  state.tiles[variant] = tile;
  const button = $("#grid").children[variant];
  $("img", button).src = tile.url;
  button.dataset.seed = tile.seed;
  button.dataset.shape = tile.meta.shape.join("x");
  button.title = `variant ${variant}, seed ${tile.seed}`;
}

function selectTile(variant) {
  const tile = state.tiles[variant];
  if (!tile?.meta) return;
  state.selected = variant;
  markTiles();
  $("#details").hidden = false;
  $("#detail-image").src = tile.url;
  $("#detail-title").textContent = `variant ${variant} · ${tile.meta.shape[0]}×${tile.meta.shape[1]}`;
  const seeds = [["seed", tile.seed], ["request seed", tile.requestSeed], ["key", tile.meta.key]];
  const terms = seeds.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", { text: value })]);
  $("#detail-seeds").replaceChildren(...terms);
  const rows = tile.meta.applied.map((entry) => {
    const drew = Object.entries(entry)
      .filter(([key]) => !["op", "op_index", "transform"].includes(key))
      .map(([key, value]) => `${key} ${inline(value)}`);
    const op = entry.op_index >= 0 ? `${entry.op_index} ${entry.op}` : entry.op;
    return el("tr", {}, el("td", { text: op }), el("td", { text: drew.join(", ") }));
  });
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "2", text: "nothing: no op's p said yes" })));
  $("#detail-applied tbody").replaceChildren(...rows);
  const pinned = $("#seed").value.trim() === tile.requestSeed && state.pinned === variant;
  $("#pin").textContent = pinned ? "pinned" : "pin this seed";
  $("#pin").disabled = pinned;
}

function closeDetails() {
  state.selected = null;
  $("#details").hidden = true;
  markTiles();
}

// Pinning keeps the request seed the tile came from, so the tile keeps its draws while the spec changes.
function pin() {
  const tile = state.tiles[state.selected];
  if (!tile) return;
  $("#seed").value = tile.requestSeed;
  state.pinned = state.selected;
  selectTile(state.selected);
  renderExport();
}

// ---- errors: the server's own, next to the field they name ----------------------------------------------

function clearErrors() {
  for (const node of document.querySelectorAll(".field-error")) node.remove();
  for (const node of document.querySelectorAll(".invalid")) node.classList.remove("invalid");
  $("#json-errors").replaceChildren();
  $("#status").classList.remove("error");
}

// The element of a field path, or of the nearest path that holds it: spec.ops[0].size[0] -> spec.ops[0].size
// -> spec.ops[0] -> spec.ops -> spec.
function fieldElement(field) {
  let path = field;
  for (;;) {
    const found = document.querySelector(`[data-field="${CSS.escape(path)}"]`);
    if (found) return found;
    const shorter = path.replace(/(\.[^.[\]]+|\[\d+\])$/, "");
    if (shorter === path || !shorter) return null;
    path = shorter;
  }
}

function showErrors(error) {
  clearErrors();
  $("#grid").dataset.state = "error";
  const problems = error.errors?.length ? error.errors : [{ field: error.field, message: error.message }];
  for (const { field, message } of problems) {
    if (field === "spec" || field?.startsWith("spec.") || field?.startsWith("spec[")) {
      $("#json-errors").append(el("li", { text: field === "spec" ? message : `${field}: ${message}` }));
    }
    let target = field ? fieldElement(field) : null;
    if (!field && error.file) target = $('[data-field="images"]');
    if (!field && ["unauthorized", "forbidden"].includes(error.code)) target = $('[data-field="api-key"]');
    if (!target || target.id === "json") continue; // the list under the editor has it
    target.classList.add("invalid");
    target.closest("details")?.setAttribute("open", "");
    target.append(el("p", { class: "field-error", role: "alert", text: message }));
  }
  $("#status").textContent = `${error.status || ""} ${error.code}: ${error.message}`.trim();
  $("#status").classList.add("error");
}

// ---- export -----------------------------------------------------------------------------------------------

function renderExport() {
  const kind = state.exportKind;
  for (const tab of document.querySelectorAll("[data-export]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.export === kind));
  }
  const out = $("#export-text");
  out.dataset.kind = kind;
  if (!isObject(state.spec)) {
    out.textContent = "The JSON editor does not hold a spec object.";
  } else if (kind === "python") {
    const classNames = Object.fromEntries(
      Object.entries(state.schemas).filter(([name]) => name !== "output").map(([name, schema]) => [name, schema.title]),
    );
    out.textContent = pythonSpec(state.spec, classNames);
  } else if (kind === "curl") {
    out.textContent = curlLine({
      spec: state.spec,
      url: api("v1/augment"),
      image: state.image ? state.image.name : "photo.jpg",
      variants: $("#variants").value.trim(),
      seed: $("#seed").value.trim(),
      key: $("#api-key").value.trim(),
    });
  } else {
    out.textContent = `${formatSpec(state.spec)}\n`;
  }
}

async function copyExport() {
  const button = $("#copy");
  try {
    await navigator.clipboard.writeText($("#export-text").textContent);
    button.textContent = "copied";
  } catch {
    getSelection().selectAllChildren($("#export-text"));
    button.textContent = "selected: press Ctrl+C";
  }
  setTimeout(() => {
    button.textContent = "copy";
  }, 1500);
}

// ---- the image --------------------------------------------------------------------------------------------

async function pickSample(button) {
  const path = button.dataset.photo;
  const response = await fetch(path);
  useImage(path.split("/").pop(), await response.blob(), button);
}

function useImage(name, blob, button) {
  state.image = { name, blob };
  for (const photo of document.querySelectorAll(".photo")) photo.classList.toggle("chosen", photo === button);
  renderExport();
  schedule();
}

function useFile(file) {
  if (!file) return;
  const preview = $("#own-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  useImage(file.name, file, $("#drop"));
}

// ---- start ------------------------------------------------------------------------------------------------

function addOp() {
  if (!isObject(state.spec)) return;
  if (!Array.isArray(state.spec.ops)) state.spec.ops = [];
  const name = $("#new-op").value;
  const example = (state.example.ops || []).find((op) => op.op === name);
  state.spec.ops.push(example ? structuredClone(example) : { op: name });
  changed(true);
}

function newSeed() {
  const [random] = crypto.getRandomValues(new BigUint64Array(1));
  $("#seed").value = String(random >> 1n); // 63 bits, like the server's own
  state.pinned = null;
  renderExport();
  schedule();
}

function listen() {
  $("#spec-json").addEventListener("input", jsonEdited);
  $("#variants").addEventListener("input", () => {
    renderExport();
    schedule();
  });
  $("#seed").addEventListener("input", () => {
    state.pinned = null;
    renderExport();
    schedule();
  });
  $("#api-key").addEventListener("change", schedule);
  $("#reseed").addEventListener("click", newSeed);
  $("#add-op").addEventListener("click", addOp);
  $("#pin").addEventListener("click", pin);
  $("#copy").addEventListener("click", copyExport);
  for (const tab of document.querySelectorAll("[data-export]")) {
    tab.addEventListener("click", () => {
      state.exportKind = tab.dataset.export;
      renderExport();
    });
  }
  for (const button of document.querySelectorAll(".photo[data-photo]")) {
    button.addEventListener("click", () => pickSample(button));
  }
  $("#file").addEventListener("change", (event) => useFile(event.target.files[0]));
  document.addEventListener("dragover", (event) => {
    event.preventDefault();
    $("#drop").classList.add("over");
  });
  document.addEventListener("dragleave", () => $("#drop").classList.remove("over"));
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    $("#drop").classList.remove("over");
    useFile(event.dataTransfer.files[0]);
  });
}

async function start() {
  let ops;
  try {
    const response = await fetch(api("v1/ops"), { headers: authHeaders() });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    ops = await response.json();
  } catch (error) {
    $("#status").textContent = `Cannot read the ops from the server: ${error.message}`;
    $("#status").classList.add("error");
    return;
  }
  state.schemas = { ...ops.ops, output: ops.output };
  state.example = ops.example;
  $("#new-op").replaceChildren(...Object.keys(ops.ops).map((name) => el("option", { value: name, text: name })));
  state.spec = structuredClone(ops.example);
  state.text = formatSpec(state.spec);
  $("#spec-json").value = state.text;
  listen();
  renderControls(state.spec, state.schemas, changed);
  renderExport();
  await pickSample($(".photo[data-photo]"));
}

start();
