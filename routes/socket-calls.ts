import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { AddressInput } from '../schemas/address.js';
import { errorResponses, IdParams, ref } from '../schemas/common.js';
import { AcceptBody, ConnectBody, ListenBody, ShutdownBody } from '../schemas/operations.js';
import { Socket } from '../schemas/socket.js';

/** The lifecycle calls on one socket: bind, listen, accept, connect, shutdown. */
const socketCalls: FastifyPluginAsyncTypebox = async (app) => {
  const tags = ['calls'];

  app.post(
    '/v1/sockets/:id/bind',
    {
      schema: {
        tags,
        operationId: 'bind',
        summary: 'bind(2) to {address, port} (port 0 = ephemeral) or {path}',
        params: IdParams,
        body: ref(AddressInput),
        response: { 200: ref(Socket), ...errorResponses },
      },
    },
    async (request) => {
      const socket = app.registry.get(request.params.id, request.user);
      socket.bind(request.body);
      return socket.toResource();
    },
  );

  app.post(
    '/v1/sockets/:id/listen',
    {
      schema: {
        tags,
        operationId: 'listen',
        summary: 'listen(2) with a backlog (default 128)',
        params: IdParams,
        body: ref(ListenBody),
        response: { 200: ref(Socket), ...errorResponses },
      },
    },
    async (request) => {
      const socket = app.registry.get(request.params.id, request.user);
      socket.listen(request.body?.backlog);
      return socket.toResource();
    },
  );

  app.post(
    '/v1/sockets/:id/accept',
    {
      schema: {
        tags,
        operationId: 'accept',
        summary: "accept(2): take one connection from the kernel's queue, waiting up to timeoutMs",
        params: IdParams,
        body: ref(AcceptBody),
        response: { 201: ref(Socket), ...errorResponses },
      },
    },
    async (request, reply) => {
      const child = await app.registry.get(request.params.id, request.user).accept(request.body?.timeoutMs);
      return reply.status(201).send(child.toResource());
    },
  );

  app.post(
    '/v1/sockets/:id/connect',
    {
      schema: {
        tags,
        operationId: 'connect',
        summary: 'connect(2), waiting up to timeoutMs; 202 when timeoutMs is 0 and it is in progress',
        params: IdParams,
        body: ref(ConnectBody),
        response: { 200: ref(Socket), 202: ref(Socket), ...errorResponses },
      },
    },
    async (request, reply) => {
      const socket = app.registry.get(request.params.id, request.user);
      const { timeoutMs, ...address } = request.body;
      const outcome = await socket.connect(address, timeoutMs);
      return reply.status(outcome === 'connected' ? 200 : 202).send(socket.toResource());
    },
  );

  app.post(
    '/v1/sockets/:id/shutdown',
    {
      schema: {
        tags,
        operationId: 'shutdown',
        summary: 'shutdown(2): SHUT_RD, SHUT_WR or SHUT_RDWR',
        params: IdParams,
        body: ref(ShutdownBody),
        response: { 200: ref(Socket), ...errorResponses },
      },
    },
    async (request) => {
      const socket = app.registry.get(request.params.id, request.user);
      socket.shutdown(request.body.how);
      return socket.toResource();
    },
  );
};
export default socketCalls;
