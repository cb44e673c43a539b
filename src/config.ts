import { readFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Type, type Static } from 'typebox';
import { Value } from 'typebox/value';

/**
 * The service configuration: one schema, its defaults, and the environment variable behind each key.
 * `loadConfig(env)` is the only place that reads `process.env`-like input.
 */
export const ConfigSchema = Type.Object({
  host: Type.String({ default: '127.0.0.1', env: 'SOCKCTL_HOST' }),
  port: Type.Integer({ minimum: 0, maximum: 65535, default: 7070, env: 'SOCKCTL_PORT' }),
  /** The bearer token; generated (and printed once by main) when empty. */
  token: Type.String({ default: '', env: 'SOCKCTL_TOKEN' }),
  /** Users and tokens (JSON, see README); reloaded on SIGHUP. */
  tokensFile: Type.String({ default: '', env: 'SOCKCTL_TOKENS_FILE' }),
  /** Address policy (JSON, see README); reloaded on SIGHUP. Without it: loopback only, ports 0 and >= 1024. */
  policyFile: Type.String({ default: '', env: 'SOCKCTL_POLICY_FILE' }),
  /** Default per-user limits (a tokens file entry may override them). */
  userSockets: Type.Integer({ minimum: 0, default: 1024, env: 'SOCKCTL_USER_SOCKETS' }),
  userListeners: Type.Integer({ minimum: 0, default: 64, env: 'SOCKCTL_USER_LISTENERS' }),
  userConnectsPerSecond: Type.Number({ minimum: 0, default: 200, env: 'SOCKCTL_USER_CONNECTS_PER_SECOND' }),
  userBufferBytes: Type.Integer({ minimum: 0, default: 256 * 1024 * 1024, env: 'SOCKCTL_USER_BUFFER_BYTES' }),
  userObservers: Type.Integer({ minimum: 0, default: 16, env: 'SOCKCTL_USER_OBSERVERS' }),
  /** HTTP requests per user per minute (429 beyond). */
  rateLimitPerMinute: Type.Integer({ minimum: 1, default: 60_000, env: 'SOCKCTL_RATE_LIMIT_PER_MINUTE' }),
  /** Shed load (503 SOCKCTL_OVERLOADED) when the event loop lags more than this (0 = never). */
  maxEventLoopDelayMs: Type.Integer({ minimum: 0, default: 2000, env: 'SOCKCTL_MAX_EVENT_LOOP_DELAY_MS' }),
  /** A socket with no operation for this long is closed (0 = never). */
  idleTimeoutMs: Type.Integer({ minimum: 0, default: 0, env: 'SOCKCTL_IDLE_TIMEOUT_MS' }),
  /** A socket older than this is closed (0 = never). */
  maxLifetimeMs: Type.Integer({ minimum: 0, default: 0, env: 'SOCKCTL_MAX_LIFETIME_MS' }),
  /** Origins allowed for CORS and on WebSocket/SSE handshakes (comma-separated); empty = same host only. */
  corsOrigins: Type.String({ default: '', env: 'SOCKCTL_CORS_ORIGINS' }),
  /** Host header values accepted besides the listening address and localhost (comma-separated), against DNS rebinding. */
  allowedHosts: Type.String({ default: '', env: 'SOCKCTL_ALLOWED_HOSTS' }),
  /** Where relative Unix paths resolve; '' means a private directory made under the OS temp dir. */
  unixDir: Type.String({ default: '', env: 'SOCKCTL_UNIX_DIR' }),
  /** Unix paths outside unixDir (bind, connect, sendto) are refused unless this is on. */
  unixAllowOutside: Type.Boolean({ default: false, env: 'SOCKCTL_UNIX_ALLOW_OUTSIDE' }),
  /** The abstract namespace ("@name") is refused unless this is on. */
  unixAllowAbstract: Type.Boolean({ default: false, env: 'SOCKCTL_UNIX_ALLOW_ABSTRACT' }),
  /** SOCK_RAW (ICMP) sockets are refused with 403 unless this is on. */
  allowRaw: Type.Boolean({ default: false, env: 'SOCKCTL_ALLOW_RAW' }),
  /** Cap and default of every blocking wait (accept, connect, recv, send). */
  maxWaitMs: Type.Integer({ minimum: 0, maximum: 3_600_000, default: 30_000, env: 'SOCKCTL_MAX_WAIT_MS' }),
  /** Ceiling on open sockets for the whole service; 0 = derived from RLIMIT_NOFILE. */
  maxSockets: Type.Integer({ minimum: 0, default: 0, env: 'SOCKCTL_MAX_SOCKETS' }),
  /** How long a closed socket stays readable. */
  closedRetentionMs: Type.Integer({ minimum: 0, default: 300_000, env: 'SOCKCTL_CLOSED_RETENTION_MS' }),
  /** Closed sockets kept for reading at most (the oldest go first). */
  closedRetentionMax: Type.Integer({ minimum: 0, default: 10_000, env: 'SOCKCTL_CLOSED_RETENTION_MAX' }),
  /** Largest request body (JSON or raw octet-stream) in bytes. */
  bodyLimit: Type.Integer({ minimum: 1024, default: 16 * 1024 * 1024, env: 'SOCKCTL_BODY_LIMIT' }),
  /** Default and cap of recv's maxBytes. */
  recvDefaultBytes: Type.Integer({ minimum: 1, default: 65_536, env: 'SOCKCTL_RECV_DEFAULT_BYTES' }),
  recvMaxBytes: Type.Integer({ minimum: 1, default: 16 * 1024 * 1024, env: 'SOCKCTL_RECV_MAX_BYTES' }),
  defaultBacklog: Type.Integer({ minimum: 0, default: 128, env: 'SOCKCTL_DEFAULT_BACKLOG' }),
  /** Events kept for replay. */
  eventLogSize: Type.Integer({ minimum: 16, default: 10_000, env: 'SOCKCTL_EVENT_LOG_SIZE' }),
  /** Consumer streams: bytes kept after delivery so that a client can resume with ?offset=, and for how long. */
  streamRetainBytes: Type.Integer({ minimum: 0, default: 8 * 1024 * 1024, env: 'SOCKCTL_STREAM_RETAIN_BYTES' }),
  streamRetainMs: Type.Integer({ minimum: 0, default: 60_000, env: 'SOCKCTL_STREAM_RETAIN_MS' }),
  /** A consumer's WebSocket may hold this many unsent bytes before the service stops reading the socket. */
  streamHighWaterBytes: Type.Integer({ minimum: 1024, default: 4 * 1024 * 1024, env: 'SOCKCTL_STREAM_HIGH_WATER_BYTES' }),
  /**
   * Bytes from a consumer waiting for the socket's send buffer before its WebSocket is paused. The kernel's
   * send buffer (megabytes, autotuned) is the real queue; more here only keeps 64 KiB frame buffers alive
   * longer, and at 4 MiB one WebSocket → TCP round in six fell into back-to-back mark-compacts (none at 1 MiB).
   */
  streamWriteQueueBytes: Type.Integer({ minimum: 1024, default: 1024 * 1024, env: 'SOCKCTL_STREAM_WRITE_QUEUE_BYTES' }),
  /** Largest WebSocket message accepted from a client. */
  wsMaxPayload: Type.Integer({ minimum: 1024, default: 16 * 1024 * 1024, env: 'SOCKCTL_WS_MAX_PAYLOAD' }),
  /** Ping interval; a client that misses a pong by the next ping is dropped. */
  wsPingMs: Type.Integer({ minimum: 100, default: 30_000, env: 'SOCKCTL_WS_PING_MS' }),
  /** Events queued for a slow observer before the oldest are dropped (and a gap reported). */
  observerQueue: Type.Integer({ minimum: 1, default: 10_000, env: 'SOCKCTL_OBSERVER_QUEUE' }),
  /** Observers (WebSocket + SSE) at once. */
  maxObservers: Type.Integer({ minimum: 1, default: 256, env: 'SOCKCTL_MAX_OBSERVERS' }),
  /** How often TCP kernel states and accept queues are sampled for `tcp`/`pending` events (only while someone subscribes). */
  kernelSampleMs: Type.Integer({ minimum: 20, default: 250, env: 'SOCKCTL_KERNEL_SAMPLE_MS' }),
  logLevel: Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
    default: 'info',
    env: 'SOCKCTL_LOG_LEVEL',
  }),
});
export type Config = Static<typeof ConfigSchema>;

type Env = Record<string, string | undefined>;

/** Builds the config from environment variables (and optional overrides), validating every value. */
export function loadConfig(env: Env = {}, overrides: Partial<Config> = {}): Config {
  const raw: Record<string, unknown> = {};
  for (const [key, schema] of Object.entries(ConfigSchema.properties)) {
    const name = (schema as { env?: string }).env;
    const value = name ? env[name] : undefined;
    if (value === undefined || value === '') continue;
    // Value.Convert is lenient ("80.5" → 80, "0x50" → 80): environment text must spell the type exactly
    const type = (schema as { type?: string }).type;
    if (type === 'integer' && !/^-?\d+$/.test(value)) throw new Error(`invalid configuration ${name}: '${value}' is not an integer`);
    if (type === 'boolean' && !/^(true|false|1|0)$/.test(value))
      throw new Error(`invalid configuration ${name}: '${value}' is not true or false`);
    raw[key] = type === 'boolean' ? value === 'true' || value === '1' : value;
  }
  const merged = Value.Default(ConfigSchema, Value.Convert(ConfigSchema, { ...raw, ...overrides }));
  if (!Value.Check(ConfigSchema, merged)) {
    const first = [...Value.Errors(ConfigSchema, merged)][0];
    const key = first?.instancePath.slice(1) ?? '';
    const envName = (ConfigSchema.properties as Record<string, { env?: string }>)[key]?.env ?? key;
    throw new Error(`invalid configuration ${envName}: ${first?.message ?? 'invalid'}`);
  }
  const config = merged as Config;
  if (config.maxSockets === 0) config.maxSockets = defaultMaxSockets();
  return config;
}

/** A private directory for relative Unix paths (short: sun_path holds 108 bytes). */
export function makeUnixDir(): string {
  return mkdtempSync(join(tmpdir(), 'sockctl-'));
}

/** Safely below RLIMIT_NOFILE: leave room for the HTTP server's own connections and files. */
function defaultMaxSockets(): number {
  let soft = 1024;
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const value = line?.split(/\s+/)[3];
    if (value && value !== 'unlimited') soft = Number(value);
    else if (value === 'unlimited') soft = 1 << 20;
  } catch {
    // not Linux /proc: keep the conservative default
  }
  return Math.max(16, Math.floor(soft * 0.8) - 64);
}
