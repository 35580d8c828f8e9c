// A spec as text: the JSON the editor shows, the Python of augserve_client's builders, and the README's curl
// line. Pure functions of their arguments: no page, no server.

export const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

// JSON with a space after ":" and ",", as docs/spec.md writes it.
export function inline(value) {
  if (Array.isArray(value)) return `[${value.map(inline).join(", ")}]`;
  if (isObject(value)) {
    return `{${Object.entries(value).map(([key, item]) => `${JSON.stringify(key)}: ${inline(item)}`).join(", ")}}`;
  }
  return JSON.stringify(value);
}

// The editor's text: one line per top-level key, and one per op.
export function formatSpec(spec) {
  if (!isObject(spec)) return inline(spec);
  const lines = Object.entries(spec).map(([key, value]) => {
    if (key === "ops" && Array.isArray(value) && value.length) {
      return `  "ops": [\n${value.map((op) => `    ${inline(op)}`).join(",\n")}\n  ]`;
    }
    return `  ${JSON.stringify(key)}: ${inline(value)}`;
  });
  return `{\n${lines.join(",\n")}\n}`;
}

// Ranges, sizes and colours as tuples, as the builders' signatures have them; right_angles is a list.
function python(value, name) {
  if (value === null) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (Array.isArray(value)) {
    const items = value.map((item) => python(item));
    if (name === "right_angles") return `[${items.join(", ")}]`;
    return items.length === 1 ? `(${items[0]},)` : `(${items.join(", ")})`;
  }
  if (isObject(value)) {
    return `{${Object.entries(value).map(([key, item]) => `${JSON.stringify(key)}: ${python(item)}`).join(", ")}}`;
  }
  return JSON.stringify(value); // numbers, and strings (a JSON string is a Python one)
}

function call(className, object, skip = []) {
  const args = Object.entries(object)
    .filter(([key]) => !skip.includes(key))
    .map(([key, value]) => (/^[A-Za-z_]\w*$/.test(key)
      ? `${key}=${python(value, key)}`
      : `**{${JSON.stringify(key)}: ${python(value, key)}}`));
  return `${className}(${args.join(", ")})`;
}

// classNames: op name -> builder class (from each op schema's title: Reflect, Rotate, Crop, Shift).
export function pythonSpec(spec, classNames) {
  const used = new Set(["Spec"]);
  const lines = [];
  for (const [key, value] of Object.entries(spec)) {
    if (key === "ops" && Array.isArray(value)) {
      const ops = value.map((op) => {
        const className = isObject(op) && Object.hasOwn(classNames, op.op) ? classNames[op.op] : null;
        if (!className) return `# not an op: ${inline(op)}`;
        used.add(className);
        return `${call(className, op, ["op"])},`;
      });
      lines.push(`    ops=[\n${ops.map((op) => `        ${op}`).join("\n")}\n    ],`);
    } else if (key === "output" && isObject(value)) {
      used.add("Output");
      lines.push(`    output=${call("Output", value)},`);
    } else {
      lines.push(`    ${key}=${python(value, key)},`);
    }
  }
  return `from augserve_client import ${[...used].sort().join(", ")}\n\nspec = Spec(\n${lines.join("\n")}\n)\n`;
}

function shellQuote(text) {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}

// The README's curl example with this spec, image, variants and seed; a key is read from AUGSERVE_API_KEY.
export function curlLine({ spec, url, image, variants, seed, key }) {
  const fields = [`-F ${shellQuote(`images=@${image}`)}`, `-F variants=${shellQuote(variants || "1")}`];
  if (seed) fields.push(`-F seed=${shellQuote(seed)}`);
  const auth = key ? ' -H "Authorization: Bearer $AUGSERVE_API_KEY"' : "";
  return [
    `mkdir -p variants && curl -sS --fail-with-body${auth} ${url} \\`,
    `  ${fields.join(" ")} \\`,
    `  -F ${shellQuote(`spec=${inline(spec)}`)} \\`,
    "  | tar xv -C variants",
    "",
  ].join("\n");
}
