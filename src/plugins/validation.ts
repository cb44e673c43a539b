import { Ajv, type Options } from 'ajv';
import addFormats from 'ajv-formats';
import type { FastifyInstance } from 'fastify';
import type { TSchema } from 'typebox';

/**
 * Two validators: bodies are checked strictly (a string is not a number, unknown fields are a 400), while
 * querystrings, params and headers, which are text on the wire, are coerced ("true" → true, "80" → 80).
 * Fastify's default compiler coerces and strips unknown fields everywhere, which would hide bad input.
 */
export function installValidators(app: FastifyInstance, shared: TSchema[]): void {
  const base: Options = { allErrors: false, removeAdditional: false, useDefaults: true, strict: false };
  const strict = addFormats.default(new Ajv({ ...base, coerceTypes: false }));
  const coercing = addFormats.default(new Ajv({ ...base, coerceTypes: 'array' }));
  for (const schema of shared) {
    strict.addSchema(schema);
    coercing.addSchema(schema);
  }
  app.setValidatorCompiler(({ schema, httpPart, contentType }) => {
    // A raw body is a Buffer, which JSON Schema cannot describe: its `{type: string, format: binary}` is for
    // OpenAPI only, and validating a Buffer against it would refuse every raw send.
    if (httpPart === 'body' && contentType === 'application/octet-stream') return () => true;
    return (httpPart === 'body' ? strict : coercing).compile(schema);
  });
}
