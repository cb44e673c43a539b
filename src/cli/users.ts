import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Value } from 'typebox/value';
import { ROLES, TokensFile, type UserEntry } from '../../schemas/policy.js';

const USAGE = `usage: npm run users -- <command> [options]
  list                                  users, roles and limits (tokens are never printed)
  add <name> [--role user|admin] [--sockets N] [--listeners N] [--connects-per-second N]
                                        adds a user with a fresh token and prints the token once
  remove <name>
  token <name>                          replaces the user's token and prints the new one
options: --file PATH (default $SOCKCTL_TOKENS_FILE)
A running service rereads the file on SIGHUP.`;

function load(file: string): { users: UserEntry[] } {
  if (!existsSync(file)) return { users: [] };
  const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
  if (!Value.Check(TokensFile, parsed)) throw new Error(`${file} is not a valid tokens file`);
  return parsed;
}

function save(file: string, data: { users: UserEntry[] }): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(data, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, file); // atomic: a SIGHUP reload never reads half a file
}

function main(argv: string[]): number {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      file: { type: 'string' },
      role: { type: 'string', default: 'user' },
      sockets: { type: 'string' },
      listeners: { type: 'string' },
      'connects-per-second': { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  const [command, name] = positionals;
  const file = values.file ?? process.env.SOCKCTL_TOKENS_FILE;
  if (values.help || !command) return void console.log(USAGE), 0;
  if (!file) throw new Error('no tokens file: pass --file or set SOCKCTL_TOKENS_FILE');
  const data = load(file);
  const find = () => {
    const u = data.users.find((x) => x.name === name);
    if (!u) throw new Error(`no user '${name}'`);
    return u;
  };
  switch (command) {
    case 'list':
      for (const u of data.users) console.log(`${u.name}\t${u.role}\t${JSON.stringify(u.limits ?? {})}`);
      return 0;
    case 'add': {
      if (!name) throw new Error('add needs a name');
      if (data.users.some((u) => u.name === name)) throw new Error(`user '${name}' exists`);
      if (!(ROLES as readonly string[]).includes(values.role!)) throw new Error(`role must be one of ${ROLES.join(', ')}`);
      const limits: UserEntry['limits'] = {};
      if (values.sockets) limits.sockets = Number(values.sockets);
      if (values.listeners) limits.listeners = Number(values.listeners);
      if (values['connects-per-second']) limits.connectsPerSecond = Number(values['connects-per-second']);
      const entry: UserEntry = { name, token: randomBytes(24).toString('base64url'), role: values.role as UserEntry['role'] };
      if (Object.keys(limits).length > 0) entry.limits = limits;
      if (!Value.Check(TokensFile, { users: [entry] })) throw new Error('invalid name or limits');
      data.users.push(entry);
      save(file, data);
      console.log(entry.token);
      return 0;
    }
    case 'remove':
      find();
      data.users = data.users.filter((u) => u.name !== name);
      save(file, data);
      return 0;
    case 'token': {
      const u = find();
      u.token = randomBytes(24).toString('base64url');
      save(file, data);
      console.log(u.token);
      return 0;
    }
    default:
      throw new Error(`unknown command '${command}'\n${USAGE}`);
  }
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (e) {
  console.error(`users: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 2;
}
