import { SEND_FLAGS } from '../../schemas/operations.js';
import { errors } from '../errors.js';
import { C } from '../io/native.js';

type SendFlag = (typeof SEND_FLAGS)[number];

/** MSG_* names → the flags word of send(2); an unknown name is a 400. */
export function sendFlags(names: readonly string[]): number {
  let flags = 0;
  for (const name of names) {
    if (!(SEND_FLAGS as readonly string[]).includes(name))
      throw errors.badRequest(`unknown send flag '${name}' (one of ${SEND_FLAGS.join(', ')})`);
    flags |= C[name as SendFlag];
  }
  return flags;
}
