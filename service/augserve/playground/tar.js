// The variant tar of POST /v1/augment, read as it arrives (docs/wire-format.md): each member is a 512-byte
// ustar header (name, octal size, checksum), its data, and zeros up to the next 512 bytes; two zero blocks end a
// complete stream. A stream that stops short of that marker was cut, and is an error, never a shorter tar.

const BLOCK = 512;

function text(header, start, length) {
  const bytes = header.subarray(start, start + length);
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end));
}

function checksumOk(header) {
  let sum = 0;
  for (let index = 0; index < BLOCK; index += 1) sum += index >= 148 && index < 156 ? 32 : header[index];
  return sum === parseInt(text(header, 148, 8).trim(), 8);
}

// Yields {name, data} per member; throws where the stream is not a whole tar.
export async function* tarMembers(stream) {
  const reader = stream.getReader();
  let buffer = new Uint8Array(0);
  let ended = false;
  const fill = async (size) => {
    while (buffer.length < size && !ended) {
      const { done, value } = await reader.read();
      if (done) {
        ended = true;
      } else {
        const joined = new Uint8Array(buffer.length + value.length);
        joined.set(buffer);
        joined.set(value, buffer.length);
        buffer = joined;
      }
    }
    return buffer.length >= size;
  };
  try {
    for (;;) {
      if (!(await fill(BLOCK))) throw new Error("the stream ended without the tar end-of-archive marker");
      const header = buffer.subarray(0, BLOCK);
      if (header.every((byte) => byte === 0)) {
        if ((await fill(2 * BLOCK)) && buffer.subarray(BLOCK, 2 * BLOCK).every((byte) => byte === 0)) return;
        throw new Error("the stream ended inside the tar end-of-archive marker");
      }
      if (!checksumOk(header)) throw new Error("a tar header with a bad checksum");
      const prefix = text(header, 345, 155);
      const name = prefix ? `${prefix}/${text(header, 0, 100)}` : text(header, 0, 100);
      const size = parseInt(text(header, 124, 12).trim() || "0", 8);
      const total = BLOCK + Math.ceil(size / BLOCK) * BLOCK;
      if (!(await fill(total))) throw new Error(`the stream was cut inside ${name}`);
      yield { name, data: buffer.slice(BLOCK, BLOCK + size) };
      buffer = buffer.slice(total);
    }
  } finally {
    if (!ended) reader.cancel().catch(() => {});
  }
}
