import type { Encoding } from '../schemas/common.js';
import { errors } from './errors.js';

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const HEX = /^(?:[0-9a-fA-F]{2})*$/;

/** Text from a JSON body → bytes; malformed base64 or hex is a 400, never silently truncated. */
export function decode(data: string, encoding: Encoding = 'utf8'): Buffer {
  switch (encoding) {
    case 'utf8':
      return Buffer.from(data, 'utf8');
    case 'base64':
      if (!BASE64.test(data)) throw errors.badRequest('data is not valid base64', 'SOCKCTL_BAD_ENCODING');
      return Buffer.from(data, 'base64');
    case 'hex':
      if (!HEX.test(data)) throw errors.badRequest('data is not valid hex (pairs of 0-9a-f)', 'SOCKCTL_BAD_ENCODING');
      return Buffer.from(data, 'hex');
  }
}

export function encode(data: Buffer, encoding: Encoding = 'utf8'): string {
  return data.toString(encoding);
}
