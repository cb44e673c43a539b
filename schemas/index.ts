import type { TSchema } from 'typebox';
import { AddressInput, InetAddress, SockaddrView, SocketAddress, UnixAddress } from './address.js';
import { Encoding, ErrorResponse } from './common.js';
import {
  AcceptBody,
  BulkDeleteResult,
  ConnectBody,
  CreateSocketBody,
  Health,
  ListenBody,
  RecvBody,
  RecvResult,
  SendBody,
  SendResult,
  ShutdownBody,
  SocketPairBody,
} from './operations.js';
import { Linger, SocketOptions } from './options.js';
import { ClientOp, StreamEvent } from './streams.js';
import { AsyncError, Family, KernelView, Protocol, Socket, SocketList, SocketPair, SocketState, SocketStats, SocketType } from './socket.js';

/** Every shared schema, registered once with `addSchema` and published in openapi/ under its `$id`. */
export const sharedSchemas: TSchema[] = [
  ErrorResponse,
  Encoding,
  InetAddress,
  UnixAddress,
  SocketAddress,
  AddressInput,
  SockaddrView,
  Family,
  SocketType,
  Protocol,
  SocketState,
  SocketStats,
  AsyncError,
  KernelView,
  Linger,
  SocketOptions,
  Socket,
  SocketList,
  SocketPair,
  CreateSocketBody,
  BulkDeleteResult,
  ListenBody,
  AcceptBody,
  ConnectBody,
  SendBody,
  SendResult,
  RecvBody,
  RecvResult,
  ShutdownBody,
  SocketPairBody,
  Health,
  ClientOp,
  StreamEvent,
];
