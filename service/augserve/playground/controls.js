// The spec as controls, one card per op and one for output, built from the JSON schemas of GET /v1/ops: a
// select per enum, a slider per bounded number (p, quality), a number pair per range or size, checkboxes for
// booleans and right angles, a colour for fill. A field the spec does not set shows its default, greyed.
// Every row carries data-field, the path the server's errors name (spec.ops[1].angle), so an error finds it.

import { inline, isObject } from "./exports.js";

const ADVANCED = new Set(["border", "fill", "interpolation", "if_smaller"]); // folded under "more"
const STRUCTURAL = new Set(["mode", "unit", "format"]); // they change which other fields matter
// Two fields of which one is used: shown as a choice rather than as two nullable fields.
const CHOICES = { rotate: { angle: "angle range", right_angles: "right angles" } };
const CHOICE_DEFAULTS = { angle: [-15, 15], right_angles: [90, 180, 270] };
const ON_DEFAULTS = { size: [224, 224] }; // what a nullable field becomes when it is switched on
const STEPS = { p: "0.05", angle: "1", scale: "0.05", ratio: "0.05" };
const resized = (op) => valueOf(op, "mode", "random") === "random_resized";
// Fields that matter only in some modes (shown anyway when the spec sets them, so their errors have a place).
const RELEVANT = {
  crop: { scale: resized, ratio: resized, interpolation: resized, if_smaller: (op) => !resized(op) },
  output: {
    quality: (out) => ["jpeg", "webp"].includes(valueOf(out, "format", "png")),
    interpolation: (out) => valueOf(out, "size", null) !== null,
  },
};

let context = { spec: null, schemas: {}, changed: () => {} };

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

const clone = (value) => (value === undefined ? undefined : JSON.parse(JSON.stringify(value)));
const absent = (value) => value === undefined || value === null;

function valueOf(object, key, fallback) {
  return isObject(object) && key in object ? object[key] : fallback;
}

// changed(structural) is called after every edit; a structural one asks for the controls to be drawn again.
export function renderControls(spec, schemas, changed) {
  context = { spec, schemas, changed };
  const ops = document.querySelector("#ops");
  const output = document.querySelector("#output");
  const note = document.querySelector("#controls-note");
  document.querySelector("#controls").classList.toggle("stale", spec === null);
  note.hidden = isObject(spec);
  if (spec === null) {
    note.textContent = "The JSON editor holds text that is not JSON: fix it there.";
    return;
  }
  if (!isObject(spec)) {
    note.textContent = "A spec is a JSON object.";
    ops.replaceChildren();
    output.replaceChildren();
    return;
  }
  const list = Array.isArray(spec.ops) ? spec.ops : [];
  ops.replaceChildren(...list.map((op, index) => opCard(op, index, list.length)));
  if (spec.ops !== undefined && !Array.isArray(spec.ops)) ops.append(el("p", { class: "note", text: "ops is a list" }));
  output.replaceChildren(outputCard());
}

function opCard(op, index, count) {
  const name = valueOf(op, "op", "?");
  const schema = context.schemas[name];
  const ops = context.spec.ops;
  const move = (delta) => () => {
    [ops[index], ops[index + delta]] = [ops[index + delta], ops[index]];
    context.changed(true);
  };
  const button = (text, title, onclick, disabled = false) =>
    el("button", { type: "button", title, "aria-label": `${title} (op ${index})`, onclick, disabled, text });
  const header = el(
    "header",
    {},
    el("h3", {}, el("span", { class: "index", text: String(index) }), ` ${name}`),
    button("↑", "move up", move(-1), index === 0),
    button("↓", "move down", move(1), index === count - 1),
    button("×", "remove", () => {
      ops.splice(index, 1);
      context.changed(true);
    }),
  );
  const path = `spec.ops[${index}]`;
  const card = el("article", { class: "op", "data-field": path }, header);
  if (!isObject(op) || !schema || name === "output") {
    card.append(el("p", { class: "note", text: `not an op this server knows: ${inline(op)}` }));
  } else {
    card.append(...fieldRows(op, schema, path, name, () => op));
  }
  return card;
}

function outputCard() {
  const spec = context.spec;
  const header = el("header", {}, el("h3", { text: "output" }));
  const card = el("article", { class: "op output", "data-field": "spec.output" }, header);
  if (spec.output !== undefined && !isObject(spec.output)) {
    card.append(el("p", { class: "note", text: "output is an object" }));
    return card;
  }
  const target = () => {
    if (!isObject(spec.output)) spec.output = {};
    return spec.output;
  };
  card.append(...fieldRows(spec.output || {}, context.schemas.output, "spec.output", "output", target));
  return card;
}

// One row per field in the schema's order; the rarely changed ones under a fold; unknown ones as they are.
function fieldRows(object, schema, path, kind, target) {
  const choice = CHOICES[kind];
  const relevant = RELEVANT[kind] || {};
  const chosen = choice && (Object.keys(choice).find((name) => !absent(object[name])) || Object.keys(choice)[0]);
  const main = choice ? [choiceRow(object, choice, chosen)] : [];
  const advanced = [];
  for (const name of Object.keys(schema.properties)) {
    const present = object[name] !== undefined;
    if (name === "op") continue;
    if (choice && name in choice && name !== chosen && absent(object[name])) continue;
    if (relevant[name] && !relevant[name](object) && !present) continue;
    const row = fieldRow(object, name, schema.properties[name], `${path}.${name}`, target, choice && name in choice);
    (ADVANCED.has(name) ? advanced : main).push(row);
  }
  for (const name of Object.keys(object)) {
    if (name === "op" || name in schema.properties) continue;
    const value = el("div", { class: "input" }, el("code", { text: inline(object[name]) }));
    main.push(el("div", { class: "field set", "data-field": `${path}.${name}` }, el("label", { text: name }), value,
      resetButton(object, name)));
  }
  if (advanced.length) {
    const open = advanced.some((row) => row.classList.contains("set"));
    main.push(el("details", { open }, el("summary", { text: "more" }), ...advanced));
  }
  return main;
}

function choiceRow(object, choice, chosen) {
  const options = Object.entries(choice).map(([name, label]) =>
    el("option", { value: name, text: label, selected: name === chosen }));
  const select = el("select", { "aria-label": "kind" }, ...options);
  select.addEventListener("change", () => {
    for (const name of Object.keys(choice)) delete object[name];
    if (select.value !== Object.keys(choice)[0]) object[select.value] = clone(CHOICE_DEFAULTS[select.value]);
    context.changed(true);
  });
  return el("div", { class: "field" }, el("label", { text: "kind" }), el("div", { class: "input" }, select));
}

function resetButton(object, name) {
  const reset = () => {
    delete object[name];
    context.changed(true);
  };
  const attributes = { type: "button", class: "reset", title: "back to the default", "aria-label": `reset ${name}` };
  return el("button", { ...attributes, onclick: reset, text: "↺" });
}

// A schema without its null alternative: {schema, nullable}.
function withoutNull(schema) {
  const options = schema.anyOf || [];
  const others = options.filter((option) => option.type !== "null");
  if (options.length && others.length === 1) return { schema: { ...schema, ...others[0] }, nullable: true };
  return { schema, nullable: false };
}

// Label, widget, and a reset button where the spec sets a field that has a default. A field of a choice
// (rotate's angle or right_angles) is never switched off here: the choice row does that.
function fieldRow(object, name, rawSchema, path, target, ofChoice) {
  const { schema, nullable } = withoutNull(rawSchema);
  const present = object[name] !== undefined;
  let value = present ? object[name] : rawSchema.default ?? null;
  if (value === null && ofChoice) value = CHOICE_DEFAULTS[name] ?? null;
  const set = (next) => {
    target()[name] = next;
    context.changed(STRUCTURAL.has(name));
  };
  const label = el("label", { text: name.replaceAll("_", " "), title: rawSchema.description || "" });
  const input = el("div", { class: "input" });
  const row = el("div", { class: `field${present ? " set" : ""}`, "data-field": path }, label, input);
  const tail = present && "default" in rawSchema ? resetButton(object, name) : el("span");
  if (nullable && !ofChoice) {
    const on = !absent(value);
    const toggle = el("input", { type: "checkbox", checked: on, "aria-label": `${name} on` });
    toggle.addEventListener("change", () => {
      if (toggle.checked) {
        set(clone(ON_DEFAULTS[name] ?? CHOICE_DEFAULTS[name] ?? 0));
      } else {
        delete target()[name];
        context.changed(true);
      }
    });
    input.append(toggle);
    if (!on) {
      row.append(tail);
      return row;
    }
  }
  input.append(widget(schema, value, set, name, object));
  row.append(tail);
  return row;
}

function stepFor(name, object) {
  if (name === "x" || name === "y") return valueOf(object, "unit", "fraction") === "pixels" ? "1" : "0.01";
  return STEPS[name] || "any";
}

function numberInput(schema, value, onValue, attributes) {
  const step = schema.type === "integer" ? "1" : "any";
  const input = el("input", { type: "number", value: value ?? "", step, ...attributes });
  input.addEventListener("input", () => {
    const number = Number(input.value);
    if (input.value.trim() !== "" && Number.isFinite(number)) onValue(number);
  });
  return input;
}

function widget(schema, value, set, name, object) {
  const numeric = schema.type === "number" || schema.type === "integer";
  if (schema.enum && schema.type !== "array") {
    const options = schema.enum.map((option) =>
      el("option", { value: option, text: option, selected: option === value }));
    return el("select", { "aria-label": name, onchange: (event) => set(event.target.value) }, ...options);
  }
  if (schema.type === "boolean") {
    const onchange = (event) => set(event.target.checked);
    return el("input", { type: "checkbox", checked: value === true, "aria-label": name, onchange });
  }
  if (numeric && "minimum" in schema && "maximum" in schema) return slider(schema, value, set, name, object);
  if (numeric) return numberInput(schema, value, set, { "aria-label": name });
  if (schema.type === "array" && schema.prefixItems?.length === 2) return pair(schema, value, set, name, object);
  if (schema.type === "array" && schema.items?.enum) return checks(schema.items.enum, value, set);
  if (name === "fill") return fillWidget(value, set);
  const text = el("input", { type: "text", value: inline(value), "aria-label": name });
  text.addEventListener("input", () => {
    try {
      set(JSON.parse(text.value));
    } catch {
      // not JSON yet: wait for more typing
    }
  });
  return text;
}

function slider(schema, value, set, name, object) {
  const step = schema.type === "integer" ? "1" : stepFor(name, object);
  const bounds = { min: schema.minimum, max: schema.maximum, step };
  const range = el("input", { type: "range", ...bounds, value, "aria-label": name });
  const number = numberInput(schema, value, (next) => {
    range.value = next;
    set(next);
  }, { ...bounds, "aria-label": `${name} value` });
  range.addEventListener("input", () => {
    number.value = range.value;
    set(Number(range.value));
  });
  return el("span", { class: "slider" }, range, number);
}

// A range ([min, max]) or a size ([height, width]); a single number (a square size) shows as both.
function pair(schema, value, set, name, object) {
  const values = Array.isArray(value) ? [...value] : [value, value];
  const size = schema.prefixItems[0].type === "integer";
  const step = size ? "1" : stepFor(name, object);
  const parts = size ? ["height", "width"] : ["min", "max"];
  const inputs = values.slice(0, 2).map((item, index) => numberInput(schema.prefixItems[index], item, (next) => {
    values[index] = next;
    set([...values]);
  }, { step, "aria-label": `${name} ${parts[index]}` }));
  return el("span", { class: "pair" }, inputs[0], el("span", { text: size ? "×" : "to" }), inputs[1]);
}

function checks(options, value, set) {
  const chosen = new Set(Array.isArray(value) ? value : []);
  return el("span", { class: "checks" }, ...options.map((option) => {
    const box = el("input", { type: "checkbox", checked: chosen.has(option) });
    box.addEventListener("change", () => {
      if (box.checked) chosen.add(option);
      else chosen.delete(option);
      set(options.filter((item) => chosen.has(item)));
    });
    return el("label", {}, box, ` ${option}`);
  }));
}

// fill: one grey level or [r, g, b]; the colour picker writes a grey as one number.
function fillWidget(value, set) {
  const rgb = Array.isArray(value) ? value : [value, value, value];
  const hex = rgb.map((part) => Math.max(0, Math.min(255, Number(part) || 0)).toString(16).padStart(2, "0"));
  const picker = el("input", { type: "color", value: `#${hex.join("")}`, "aria-label": "fill" });
  picker.addEventListener("input", () => {
    const parts = [1, 3, 5].map((at) => parseInt(picker.value.slice(at, at + 2), 16));
    set(parts.every((part) => part === parts[0]) ? parts[0] : parts);
  });
  return el("span", { class: "fill" }, picker, el("code", { text: inline(value) }));
}
