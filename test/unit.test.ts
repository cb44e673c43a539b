// Pure parts, without HTTP: the codec, the errno → status table, the state machine, the event log,
// the sockaddr view and the configuration loader.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { decode, encode } from '../src/codec.js';
import { loadConfig } from '../src/config.js';
import { SockctlError, statusForErrno } from '../src/errors.js';
import { EventLog, isoNow } from '../src/events/event-log.js';
import { C } from '../src/io/native.js';
import { sockaddrView } from '../src/sockets/addresses.js';
import { canTransition, TRANSITIONS } from '../src/sockets/state.js';
import { STATES } from '../schemas/socket.js';

/** The SockctlError a call throws (fails the test if it throws nothing or something else). */
function thrown(fn: () => unknown): SockctlError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SockctlError);
    return e as SockctlError;
  }
  throw new Error('expected a throw');
}

describe('codec', () => {
  // Valid text decodes to the exact bytes, and encode is its inverse.
  it('decodes and encodes utf8, base64 and hex', () => {
    expect(decode('héllo')).toEqual(Buffer.from([0x68, 0xc3, 0xa9, 0x6c, 0x6c, 0x6f]));
    expect(decode('AAH/gA==', 'base64')).toEqual(Buffer.from([0, 1, 0xff, 0x80]));
    expect(decode('AAH/', 'base64')).toEqual(Buffer.from([0, 1, 0xff]));
    expect(decode('', 'base64')).toEqual(Buffer.alloc(0));
    expect(decode('00ff7F', 'hex')).toEqual(Buffer.from([0, 0xff, 0x7f]));
    expect(decode('', 'hex')).toEqual(Buffer.alloc(0));
    const bytes = Buffer.from([0, 1, 0xfe, 0xff, 0x41]);
    expect(encode(bytes, 'hex')).toBe('0001feff41');
    expect(encode(bytes, 'base64')).toBe('AAH+/0E=');
    expect(encode(Buffer.from('ok'))).toBe('ok');
    for (const enc of ['base64', 'hex'] as const) expect(decode(encode(bytes, enc), enc)).toEqual(bytes);
  });

  // Malformed input is a 400 SOCKCTL_BAD_ENCODING, never a silent truncation (Buffer.from would truncate).
  it.each([
    ['base64', 'abc'],
    ['base64', 'a'],
    ['base64', 'ab=c'],
    ['base64', 'ab$d'],
    ['base64', 'AAH/gA'],
    ['base64', 'YQ==YQ=='],
    ['hex', 'a'],
    ['hex', 'abc'],
    ['hex', 'gg'],
    ['hex', '0x00'],
    ['hex', 'ab cd'],
  ])('refuses %s %j', (encoding, data) => {
    const e = thrown(() => decode(data, encoding as 'base64' | 'hex'));
    expect(e.statusCode).toBe(400);
    expect(e.code).toBe('SOCKCTL_BAD_ENCODING');
    expect(e.message).toContain(encoding);
  });
});

describe('statusForErrno (DESIGN.md section 4)', () => {
  const table: Record<number, string[]> = {
    400: ['EINVAL'],
    409: [
      'EBADF',
      'EISCONN',
      'ENOTCONN',
      'EALREADY',
      'EOPNOTSUPP',
      'EDESTADDRREQ',
      'EPIPE',
      'EADDRINUSE',
      'EADDRNOTAVAIL',
      'EPROTOTYPE',
      'ENOENT',
      'EACCES',
      'EPERM',
    ],
    502: ['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH'],
    503: ['EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM'],
    504: ['EAGAIN', 'ETIMEDOUT'],
  };
  const cases = Object.entries(table).flatMap(([status, codes]) => codes.map((c) => [c, Number(status)] as const));

  // Every errno the contract names maps to its status.
  it.each(cases)('%s → %i', (code, status) => {
    expect(statusForErrno(code)).toBe(status);
  });

  // An errno the table does not know is a server error, not a guess.
  it('answers 500 for an errno outside the table', () => {
    expect(statusForErrno('EXDEV')).toBe(500);
    expect(statusForErrno('')).toBe(500);
  });

  // The error body carries errno/syscall only when given.
  it('shapes SockctlError bodies', () => {
    expect(new SockctlError(409, 'EADDRINUSE', 'bind x', { errno: 98, syscall: 'bind', socket: 's1' }).toJSON()).toEqual({
      statusCode: 409,
      error: 'Conflict',
      code: 'EADDRINUSE',
      message: 'bind x',
      errno: 98,
      syscall: 'bind',
      socket: 's1',
    });
    expect(new SockctlError(400, 'SOCKCTL_BAD_REQUEST', 'no').toJSON()).toEqual({
      statusCode: 400,
      error: 'Bad Request',
      code: 'SOCKCTL_BAD_REQUEST',
      message: 'no',
    });
  });
});

describe('state machine', () => {
  // closed is terminal; every other state can close.
  it('closed has no exits and every open state can close', () => {
    expect(TRANSITIONS.closed).toEqual([]);
    for (const to of STATES) expect(canTransition('closed', to)).toBe(false);
    for (const from of STATES.filter((s) => s !== 'closed')) expect(canTransition(from, 'closed')).toBe(true);
  });

  // The lifecycle's edges, allowed and not.
  it.each([
    ['created', 'bound', true],
    ['created', 'listening', true],
    ['created', 'connecting', true],
    ['bound', 'listening', true],
    ['connecting', 'connected', true],
    ['connecting', 'created', true],
    ['connecting', 'bound', true],
    ['listening', 'connected', false],
    ['listening', 'bound', false],
    ['listening', 'created', false],
    ['connected', 'listening', false],
    ['connected', 'created', false],
    ['bound', 'created', false],
  ] as const)('%s → %s is %s', (from, to, allowed) => {
    expect(canTransition(from, to)).toBe(allowed);
  });
});

describe('event log', () => {
  // seq grows by one per event, across sockets, and since(after) returns the events after that seq.
  it('numbers events in order', () => {
    const log = new EventLog(16);
    const a = log.emit('s1', 'state', { state: 'bound', previous: 'created' });
    const b = log.emit('s2', 'closed');
    expect(a).toMatchObject({ seq: 1, socket: 's1', type: 'state', state: 'bound', previous: 'created' });
    expect(b.seq).toBe(2);
    expect(log.headSeq).toBe(3);
    expect(log.since(0)).toEqual({ events: [a, b], missed: 0 });
    expect(log.since(1)).toEqual({ events: [b], missed: 0 });
    expect(log.since(2)).toEqual({ events: [], missed: 0 });
  });

  // The ring is bounded: after capacity + 10 events, the first 10 are gone and reported as missed.
  it('keeps at most capacity events and counts the missed ones', () => {
    const capacity = 16;
    const log = new EventLog(capacity);
    for (let i = 0; i < capacity + 10; i++) log.emit('s', 'data', { i });
    const all = log.since(0);
    expect(all.events).toHaveLength(capacity);
    expect(all.missed).toBe(10);
    expect(all.events.map((e) => e.seq)).toEqual(Array.from({ length: capacity }, (_, k) => 11 + k));
    expect(all.events[0]!.i).toBe(10);
    // asking from inside the window misses nothing
    expect(log.since(20)).toMatchObject({ missed: 0 });
    expect(log.since(20).events.map((e) => e.seq)).toEqual([21, 22, 23, 24, 25, 26]);
    // asking from just before the window misses the gap only
    expect(log.since(5).missed).toBe(5);
  });

  // Subscribers see every event synchronously, in seq order, until they unsubscribe.
  it('hands events to subscribers until they unsubscribe', () => {
    const log = new EventLog(16);
    const seen: number[] = [];
    const off = log.subscribe((e) => seen.push(e.seq));
    log.emit('s', 'a');
    log.emit('s', 'b');
    off();
    log.emit('s', 'c');
    expect(seen).toEqual([1, 2]);
  });

  // A socket's own listeners (consumer streams) get its events only, beside the service-wide ones.
  it("hands a socket subscriber its own socket's events only", () => {
    const log = new EventLog(16);
    const mine: string[] = [];
    const all: string[] = [];
    log.subscribe((e) => all.push(`${e.socket}:${e.type}`));
    const off = log.subscribeSocket('s1', (e, payload) => mine.push(`${e.type}:${payload?.toString() ?? ''}`));
    expect(log.subscribers).toBe(2);
    log.emit('s1', 'data', { offset: 0 }, Buffer.from('x'));
    log.emit('s2', 'data', { offset: 0 }, Buffer.from('y'));
    log.emit('s1', 'eof');
    off();
    off();
    log.emit('s1', 'closed');
    expect(mine).toEqual(['data:x', 'eof:']);
    expect(all).toEqual(['s1:data', 's2:data', 's1:eof', 's1:closed']);
    expect(log.subscribers).toBe(1);
  });
});

describe('isoNow', () => {
  afterEach(() => vi.useRealTimers());

  // The cached second and the millisecond table give what toISOString gives, at every edge of a
  // millisecond, a second, a minute, a day and a year, and going back in time (the clock was set back).
  it('is new Date().toISOString() at every edge', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const edges = [Date.UTC(2026, 11, 31, 23, 59, 59, 999), Date.UTC(2027, 0, 1), Date.UTC(2026, 11, 4, 18, 55, 52, 560), 0, 1, 999, 1000, 1001];
    for (const t of [...edges, ...edges.map((t) => t + 7), ...edges.reverse()]) {
      vi.setSystemTime(t);
      expect(isoNow()).toBe(new Date(t).toISOString());
    }
    for (let t = Date.UTC(2026, 5, 30, 23, 59, 58); t < Date.UTC(2026, 6, 1, 0, 0, 1); t += 13) {
      vi.setSystemTime(t);
      expect(isoNow()).toBe(new Date(t).toISOString());
    }
  });
});

describe('sockaddrView', () => {
  // struct sockaddr_in: sin_family in host order, htons(port), the address, 8 zero bytes.
  it('127.0.0.1:40001 is sockaddr_in 0200 9c41 7f000001 + sin_zero', () => {
    const v = sockaddrView({ family: C.AF_INET, address: '127.0.0.1', port: 40001 });
    expect(v.struct).toBe('sockaddr_in');
    expect(v.length).toBe(16);
    expect(v.hex).toBe('02009c417f0000010000000000000000');
    expect(v.fields.sin_port).toBe('htons(40001) = 9c 41');
    expect(v.fields.sin_addr).toBe('inet_pton("127.0.0.1") = 7f 00 00 01');
  });

  // struct sockaddr_in6 (28 bytes): family 10, htons(port), flowinfo, ::1, scope id.
  it('[::1]:40001 is a 28-byte sockaddr_in6', () => {
    const v = sockaddrView({ family: C.AF_INET6, address: '::1', port: 40001 });
    expect(v.struct).toBe('sockaddr_in6');
    expect(v.length).toBe(28);
    expect(v.hex).toBe('0a009c41' + '00000000' + '00000000000000000000000000000001' + '00000000');
    const scoped = sockaddrView({ family: C.AF_INET6, address: 'fe80::1', port: 80, scopeId: 2 });
    expect(scoped.hex).toBe('0a000050' + '00000000' + 'fe800000000000000000000000000001' + '02000000');
    const mapped = sockaddrView({ family: C.AF_INET6, address: '::ffff:127.0.0.1', port: 1 });
    expect(mapped.hex.slice(16, 48)).toBe('00000000000000000000ffff7f000001');
  });

  // struct sockaddr_un: family 1, the path and its NUL; addrlen = 2 + strlen + 1.
  it('a Unix path is sockaddr_un with the terminating NUL', () => {
    const v = sockaddrView({ family: C.AF_UNIX, path: '/tmp/s.sock' });
    expect(v.struct).toBe('sockaddr_un');
    expect(v.length).toBe(2 + 11 + 1);
    expect(v.hex).toBe('0100' + Buffer.from('/tmp/s.sock').toString('hex') + '00');
    const unnamed = sockaddrView({ family: C.AF_UNIX, path: null });
    expect(unnamed).toMatchObject({ hex: '0100', length: 2 });
  });
});

describe('loadConfig', () => {
  // environment text must spell an integer exactly: no silent 80.5 -> 80, 0x50 -> 80, 1e3 -> 1000
  it.each(['80.5', '0x50', '1e3', 'true', ' 80'])('rejects SOCKCTL_PORT=%j', (v) => {
    expect(() => loadConfig({ SOCKCTL_PORT: v })).toThrow(/SOCKCTL_PORT/);
  });
  it('reads booleans strictly', () => {
    expect(loadConfig({ SOCKCTL_ALLOW_RAW: 'true' }).allowRaw).toBe(true);
    expect(loadConfig({ SOCKCTL_ALLOW_RAW: '0' }).allowRaw).toBe(false);
    expect(() => loadConfig({ SOCKCTL_ALLOW_RAW: 'yes' })).toThrow(/SOCKCTL_ALLOW_RAW/);
  });

  // Defaults of DESIGN.md section 3 when nothing is set.
  it('applies defaults', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ host: '127.0.0.1', port: 7070, token: '', unixDir: '', maxWaitMs: 30_000, logLevel: 'info' });
    expect(c.maxSockets).toBeGreaterThanOrEqual(16);
  });

  // Environment values are converted from text and override defaults; overrides win over the environment.
  it('reads the environment and overrides', () => {
    const c = loadConfig({ SOCKCTL_PORT: '8080', SOCKCTL_HOST: '::1', SOCKCTL_MAX_WAIT_MS: '100', SOCKCTL_MAX_SOCKETS: '50' });
    expect(c).toMatchObject({ port: 8080, host: '::1', maxWaitMs: 100, maxSockets: 50 });
    expect(loadConfig({ SOCKCTL_PORT: '8080' }, { port: 9090 }).port).toBe(9090);
    expect(loadConfig({ SOCKCTL_PORT: '' }).port).toBe(7070);
  });

  // A bad value fails at start, naming the variable.
  it.each(['70000', 'abc', '-1', '65536'])('rejects SOCKCTL_PORT=%s naming the variable', (value) => {
    expect(() => loadConfig({ SOCKCTL_PORT: value })).toThrow(/invalid configuration SOCKCTL_PORT/);
  });

  it('rejects other bad values naming their variable', () => {
    expect(() => loadConfig({ SOCKCTL_MAX_WAIT_MS: 'soon' })).toThrow(/SOCKCTL_MAX_WAIT_MS/);
    expect(() => loadConfig({ SOCKCTL_LOG_LEVEL: 'loud' })).toThrow(/SOCKCTL_LOG_LEVEL/);
  });
});
