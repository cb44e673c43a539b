import { Type, type Static } from 'typebox';
import { ref } from './common.js';

export const InetAddress = Type.Object(
  {
    address: Type.String({
      minLength: 1,
      maxLength: 64,
      description: 'an IPv4 or IPv6 literal ("127.0.0.1", "::1", "fe80::1%1")',
    }),
    port: Type.Integer({ minimum: 0, maximum: 65535 }),
  },
  { $id: 'InetAddress', additionalProperties: false },
);
export type InetAddress = Static<typeof InetAddress>;

export const UnixAddress = Type.Object(
  {
    path: Type.Union([Type.String({ minLength: 1, maxLength: 4096 }), Type.Null()], {
      description: 'absolute path the kernel holds; null for an unnamed socket; "@name" for the abstract namespace',
    }),
  },
  { $id: 'UnixAddress', additionalProperties: false },
);
export type UnixAddress = Static<typeof UnixAddress>;

export const SocketAddress = Type.Union([ref(InetAddress), ref(UnixAddress)], { $id: 'SocketAddress' });
export type SocketAddress = Static<typeof SocketAddress>;

/** The address fields of a request: `{address, port}` for inet, `{path}` for Unix (one or the other). */
export const addressFields = {
  address: Type.Optional(InetAddress.properties.address),
  port: Type.Optional(InetAddress.properties.port),
  path: Type.Optional(
    Type.String({ minLength: 1, maxLength: 4096, description: 'Unix path, relative to SOCKCTL_UNIX_DIR or absolute' }),
  ),
};

export const AddressInput = Type.Object(addressFields, {
  $id: 'AddressInput',
  additionalProperties: false,
  description: '{address, port} for AF_INET/AF_INET6, {path} for AF_UNIX',
});
export type AddressInput = Static<typeof AddressInput>;

/** `?view=sockaddr`: the raw struct bytes, network byte order, hex. */
export const SockaddrView = Type.Object(
  {
    struct: Type.String({ description: 'sockaddr_in, sockaddr_in6 or sockaddr_un' }),
    hex: Type.String(),
    length: Type.Integer({ description: 'socklen_t the kernel would be given' }),
    fields: Type.Record(Type.String(), Type.String(), {
      description: 'each field with its bytes, e.g. sin_port: "htons(40001) = 9c 41"',
    }),
  },
  { $id: 'SockaddrView' },
);
export type SockaddrView = Static<typeof SockaddrView>;
