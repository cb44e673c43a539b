import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

/** The repository root (bench/lib/../..). */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Clock ticks per second of /proc/PID/stat (`getconf CLK_TCK`, 100 on Linux x86 and arm). */
export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

const children = new Set<ChildProcess>();

/** Kills every child still running: called on exit, on a signal and on failure. */
export function killAll(): void {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      try {
        c.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  children.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

export interface Proc {
  name: string;
  child: ChildProcess;
  pid: number;
  /** stderr and stdout tail, for failure reports. */
  output(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it exited. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts `node [nodeArgs] --import tsx script` as its own process. With `nofile`, through
 * `sh -c 'ulimit -n ...; exec node ...'` (exec: the pid is node's, so /proc/PID is the service).
 */
export function spawnNode(
  name: string,
  script: string,
  opts: { env?: Record<string, string>; nodeArgs?: string[]; nofile?: number; ipc?: boolean; stdin?: boolean; cwd?: string } = {},
): Proc {
  const args = [...(opts.nodeArgs ?? []), '--import', 'tsx', script];
  return spawnCommand(name, process.execPath, args, opts);
}

/** Starts `command args` (see spawnNode for the options); the child is killed when the bench ends. */
export function spawnCommand(
  name: string,
  command: string,
  args: string[],
  opts: { env?: Record<string, string>; nofile?: number; ipc?: boolean; stdin?: boolean; cwd?: string } = {},
): Proc {
  const env = { ...process.env, ...opts.env };
  const stdio: ('pipe' | 'ipc' | 'ignore')[] = [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'];
  if (opts.ipc) stdio.push('ipc');
  let child: ChildProcess;
  if (opts.nofile) {
    const quoted = [command, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    // the hard limit may be lower than asked (containers): take what is allowed
    const cmd = `ulimit -n ${opts.nofile} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec ${quoted}`;
    child = spawn('sh', ['-c', cmd], { cwd: opts.cwd ?? ROOT, env, stdio });
  } else {
    child = spawn(command, args, { cwd: opts.cwd ?? ROOT, env, stdio });
  }
  children.add(child);
  let tail = '';
  const keep = (d: Buffer) => {
    tail = (tail + d.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('exit', () => children.delete(child));
  return {
    name,
    child,
    pid: child.pid!,
    output: () => tail,
    async stop(graceMs = 5000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
}

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Polls `url` until it answers 2xx, the process dies, or `timeoutMs` passes. */
export async function waitHttp(proc: Proc, url: string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (proc.child.exitCode !== null) throw new Error(`${proc.name} exited (${proc.child.exitCode}): ${proc.output()}`);
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (r.ok) return;
    } catch {
      // not up yet
    }
    await sleep(50);
  }
  throw new Error(`${proc.name} did not answer ${url} within ${timeoutMs} ms: ${proc.output()}`);
}

/** Polls until 127.0.0.1:port accepts a TCP connection, the process dies, or `timeoutMs` passes. */
export async function waitTcp(proc: Proc, port: number, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (proc.child.exitCode !== null) throw new Error(`${proc.name} exited (${proc.child.exitCode}): ${proc.output()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`${proc.name} did not listen on ${port} within ${timeoutMs} ms: ${proc.output()}`);
}

/** Waits for a line on stdout matching `re`; returns the match. */
export async function waitLine(proc: Proc, re: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString();
      const m = re.exec(buf);
      if (m) {
        done();
        resolve(m);
      }
    };
    const onExit = () => {
      done();
      reject(new Error(`${proc.name} exited: ${proc.output()}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${proc.name}: no ${re} within ${timeoutMs} ms: ${proc.output()}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      proc.child.stdout?.off('data', onData);
      proc.child.off('exit', onExit);
    };
    proc.child.stdout?.on('data', onData);
    proc.child.once('exit', onExit);
  });
}

/** utime + stime of a process (all its threads), in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // the command name may hold spaces and parentheses: fields start after the last ')'
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime is field 14, stime field 15
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/**
 * CPU-seconds of the whole machine spent in processes (user + nice + system of /proc/stat), and of this
 * bench: itself, its reaped children (cutime + cstime) and its live children.
 */
export function machineCpu(): { all: number; ours: number } {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const all = (cpu[0]! + cpu[1]! + cpu[2]!) / CLK_TCK;
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  let ours = (f[11]! + f[12]! + f[13]! + f[14]!) / CLK_TCK;
  for (const c of children) {
    try {
      if (c.pid && c.exitCode === null) ours += treeCpuSeconds(c.pid); // with websockify's forks
    } catch {
      // exited meanwhile: counted in cutime once reaped
    }
  }
  return { all, ours };
}

/**
 * CPU-seconds of a process and its descendants (websockify forks per connection): utime + stime of each
 * live one, plus what the root reaped (cutime + cstime).
 */
export function treeCpuSeconds(root: number): number {
  const parents = new Map<number, number>();
  const cpu = new Map<number, number>();
  let reaped = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
      parents.set(Number(entry), f[1]!);
      cpu.set(Number(entry), (f[11]! + f[12]!) / CLK_TCK);
      if (Number(entry) === root) reaped = (f[13]! + f[14]!) / CLK_TCK;
    } catch {
      // gone meanwhile
    }
  }
  let total = reaped;
  for (const pid of cpu.keys()) {
    for (let p: number | undefined = pid; p !== undefined && p > 1; p = parents.get(p)) {
      if (p === root) {
        total += cpu.get(pid)!;
        break;
      }
    }
  }
  return total;
}

/** Resident set size of a process, in bytes (VmRSS of /proc/PID/status). */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Rejects after `ms` with a message naming `what`, so that no wait of the bench is unbounded. */
export async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
