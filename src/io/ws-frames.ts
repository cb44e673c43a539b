/**
 * The WebSocket binary frames the native reader writes itself in direct mode (native/index.d.ts setDirect):
 * server to client, so unmasked; FIN set, opcode 2; a 2-byte header up to 125 bytes of payload, else 4
 * (payloads of at most 65,535 bytes). When its write stops inside a frame, JS writes the rest, and the
 * frames after it, from the same layout.
 */
export function frameHeader(length: number): Buffer {
  return length < 126 ? Buffer.from([0x82, length]) : Buffer.from([0x82, 126, length >> 8, length & 0xff]);
}

/**
 * The bytes still to write after the first `written` bytes of `payloads` framed as the addon frames them
 * (each payload cut into frames of at most `frameBytes`): the rest of the frame it stopped in, then whole
 * frames, as views of the payloads and headers.
 */
export function framesAfter(payloads: Buffer[], written: number, frameBytes: number): Buffer[] {
  const rest: Buffer[] = [];
  let skip = written;
  for (const payload of payloads) {
    for (let at = 0; at < payload.length; at += frameBytes) {
      const body = payload.subarray(at, Math.min(payload.length, at + frameBytes));
      const header = frameHeader(body.length);
      if (skip >= header.length + body.length) {
        skip -= header.length + body.length;
        continue;
      }
      if (skip < header.length) rest.push(skip === 0 ? header : header.subarray(skip));
      rest.push(skip > header.length ? body.subarray(skip - header.length) : body);
      skip = 0;
    }
  }
  return rest;
}
