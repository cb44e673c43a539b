/**
 * The WebSocket binary frames the native reader writes itself in direct mode (native/index.d.ts setDirect):
 * server to client, so unmasked; FIN set, opcode 2; a 2-byte header up to 125 bytes of payload, else 4
 * (payloads of at most 65,535 bytes). When its write stops inside a frame, JS writes the rest, and the
 * frames after it, from the same layout; every other binary frame of a stream socket's consumer is made here
 * the same way (src/sockets/consumer.ts sendBinary).
 */
export function frameHeader(length: number): Buffer {
  return headerBytes(length) === 2 ? Buffer.from([0x82, length]) : Buffer.from([0x82, 126, length >> 8, length & 0xff]);
}

/** How long frameHeader(length) is, without making it. */
function headerBytes(length: number): 2 | 4 {
  return length < 126 ? 2 : 4;
}

/**
 * The bytes still to write after the first `written` bytes of `payloads` framed as the addon frames them
 * (each payload cut into frames of at most `frameBytes`): the rest of the frame it stopped in, then whole
 * frames, as views of the payloads and headers.
 */
export function framesAfter(payloads: Buffer[], written: number, frameBytes: number): Buffer[] {
  const rest: Buffer[] = [];
  let skip = written;
  let full: Buffer | undefined; // the header of every full frame, made once (never changed, written many times)
  for (const payload of payloads) {
    for (let at = 0; at < payload.length; at += frameBytes) {
      const length = Math.min(frameBytes, payload.length - at);
      const headerLength = headerBytes(length);
      if (skip >= headerLength + length) {
        skip -= headerLength + length; // written whole: nothing made for it
        continue;
      }
      const header = length === frameBytes ? (full ??= frameHeader(length)) : frameHeader(length);
      if (skip < headerLength) rest.push(skip === 0 ? header : header.subarray(skip));
      rest.push(payload.subarray(at + Math.max(0, skip - headerLength), at + length));
      skip = 0;
    }
  }
  return rest;
}
