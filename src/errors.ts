import type { ErrorResponse } from '../schemas/common.js';

/**
 * Every user-facing error of the service. One class, a stable `code`, an HTTP status, and for syscall
 * failures the errno name, number and syscall, with the addon's original error kept as `cause`.
 * The errno → status table lives in `statusForErrno` and nowhere else (DESIGN.md section 4).
 */

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

export function statusText(status: number): string {
  return STATUS_TEXT[status] ?? 'Error';
}

const ERRNO_STATUS: Record<string, number> = {
  EINVAL: 400,
  ENAMETOOLONG: 400,
  EAFNOSUPPORT: 400,
  EPROTONOSUPPORT: 400,
  ESOCKTNOSUPPORT: 400,
  ENOPROTOOPT: 400,
  EMSGSIZE: 400,
  EBADF: 409,
  EISCONN: 409,
  ENOTCONN: 409,
  EALREADY: 409,
  EOPNOTSUPP: 409,
  EDESTADDRREQ: 409,
  EPIPE: 409,
  EADDRINUSE: 409,
  EADDRNOTAVAIL: 409,
  EPROTOTYPE: 409,
  ENOENT: 409,
  EACCES: 409,
  EPERM: 409,
  ENOTSOCK: 409,
  ECONNREFUSED: 502,
  ECONNRESET: 502,
  ECONNABORTED: 502,
  EHOSTUNREACH: 502,
  ENETUNREACH: 502,
  EHOSTDOWN: 502,
  ENETDOWN: 502,
  EMFILE: 503,
  ENFILE: 503,
  ENOBUFS: 503,
  ENOMEM: 503,
  EAGAIN: 504,
  ETIMEDOUT: 504,
};

/** The HTTP status of a syscall failure, by errno name (DESIGN.md section 4). */
export function statusForErrno(code: string): number {
  return ERRNO_STATUS[code] ?? 500;
}

/** The wire shape of every failure: the ErrorResponse schema's type. */
export type ErrorBody = ErrorResponse;

export class SockctlError extends Error {
  readonly statusCode: number;
  readonly code: string;
  readonly errno?: number;
  readonly syscall?: string;
  socket?: string;

  constructor(
    statusCode: number,
    code: string,
    message: string,
    extra: { errno?: number; syscall?: string; socket?: string; cause?: unknown } = {},
  ) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'SockctlError';
    this.statusCode = statusCode;
    this.code = code;
    if (extra.errno !== undefined) this.errno = extra.errno;
    if (extra.syscall !== undefined) this.syscall = extra.syscall;
    if (extra.socket !== undefined) this.socket = extra.socket;
  }

  toJSON(): ErrorBody {
    const body: ErrorBody = {
      statusCode: this.statusCode,
      error: statusText(this.statusCode),
      code: this.code,
      message: this.message,
    };
    if (this.errno !== undefined) body.errno = this.errno;
    if (this.syscall !== undefined) body.syscall = this.syscall;
    if (this.socket !== undefined) body.socket = this.socket;
    return body;
  }
}

/** The shape the addon throws. */
export interface SysErrorLike {
  code: string;
  errno: number;
  syscall: string;
  message: string;
}

export function isSysError(e: unknown): e is SysErrorLike {
  return (
    e instanceof Error &&
    typeof (e as Partial<SysErrorLike>).code === 'string' &&
    typeof (e as Partial<SysErrorLike>).errno === 'number' &&
    typeof (e as Partial<SysErrorLike>).syscall === 'string'
  );
}

export function isErrno(e: unknown, ...codes: string[]): e is SysErrorLike {
  return isSysError(e) && codes.includes(e.code);
}

/**
 * A syscall failure as the user sees it: `what` names the call and its argument
 * ("bind 127.0.0.1:6666"), the rest is the kernel's own words ("address already in use").
 */
export function syscallError(
  code: string,
  errno: number,
  syscall: string,
  what: string,
  socket?: string,
  cause?: unknown,
): SockctlError {
  const text = (cause instanceof Error ? cause.message.replace(/^[a-z0-9_]+: /, '') : code).toLowerCase();
  return new SockctlError(statusForErrno(code), code, `${what}: ${text}`, { errno, syscall, socket, cause });
}

/** Wraps an addon error; anything else is rethrown untouched (a bug, answered as 500). */
export function fromSysError(e: unknown, what: string, socket?: string): SockctlError {
  if (e instanceof SockctlError) return e;
  if (!isSysError(e)) throw e;
  return syscallError(e.code, e.errno, e.syscall, what, socket, e);
}

export const errors = {
  notFound: (id: string) => new SockctlError(404, 'SOCKCTL_NOT_FOUND', `no socket with id '${id}'`, { socket: id }),
  badRequest: (message: string, code = 'SOCKCTL_BAD_REQUEST') => new SockctlError(400, code, message),
  unauthorized: () => new SockctlError(401, 'SOCKCTL_UNAUTHORIZED', 'a valid bearer token is required'),
  forbidden: (message: string) => new SockctlError(403, 'SOCKCTL_FORBIDDEN', message),
  quota: (message: string) => new SockctlError(429, 'SOCKCTL_QUOTA', message),
  shuttingDown: () => new SockctlError(503, 'SOCKCTL_SHUTTING_DOWN', 'the service is shutting down'),
  streamAttached: (id: string) =>
    new SockctlError(409, 'SOCKCTL_STREAM_ATTACHED', 'a consumer stream is attached to this socket; read from it', {
      socket: id,
    }),
  /** The descriptor is closed: what close(2)d fds answer, without touching a number the kernel may reuse. */
  closed: (id: string, syscall: string) =>
    syscallError('EBADF', 9, syscall, `${syscall}: socket ${id} is closed`, id, new Error('Bad file descriptor')),
};
