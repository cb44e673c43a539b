// What only the kernel knows becomes events while someone listens: a listener's accept queue (`pending`)
// and each TCP state the kernel moves a connection through (`tcp`), after close too (TIME_WAIT).
import { afterEach, describe, expect, it } from 'vitest';
import type { SockEvent } from '../src/events/event-log.js';
import { startApp, until, type TestApp } from './helpers.js';

let t: TestApp | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

describe('kernel events', () => {
  it('reports accept-queue changes and the TCP states of an active close', async () => {
    t = await startApp({ kernelSampleMs: 30 });
    const seen: SockEvent[] = [];
    const unsubscribe = t.app.events.subscribe((e) => seen.push(e));
    const unobserve = t.app.events.observe(); // sampling runs for dashboards only
    const stop = () => (unsubscribe(), unobserve());
    const post = async (path: string, body: unknown = {}) => (await t!.call('POST', path, body)).body;
    const l = await post('/v1/sockets', { family: 'inet', type: 'stream' });
    await post(`/v1/sockets/${l.id}/bind`, { address: '127.0.0.1', port: 0 });
    const listening = await post(`/v1/sockets/${l.id}/listen`, { backlog: 4 });
    t.app.kernelMonitor.tick(); // the baseline: an empty queue
    const c = await post('/v1/sockets', { family: 'inet', type: 'stream' });
    await post(`/v1/sockets/${c.id}/connect`, { address: '127.0.0.1', port: listening.local.port });
    const ofType = (id: string, type: string) => seen.filter((e) => e.socket === id && e.type === type);
    await until(() => ofType(l.id, 'pending').some((e) => e.pending === 1), 'pending 1');
    const a = await post(`/v1/sockets/${l.id}/accept`, { timeoutMs: 1000 });
    await until(() => ofType(l.id, 'pending').some((e) => e.pending === 0), 'pending 0');
    t.app.kernelMonitor.tick(); // baselines of both ends (ESTABLISHED), whatever the sampler's timing

    // the client closes first: FIN_WAIT2 once the peer acked, then TIME_WAIT after the peer's FIN
    await post(`/v1/sockets/${c.id}/shutdown`, { how: 'SHUT_WR' });
    await until(() => ofType(c.id, 'tcp').some((e) => e.state === 'FIN_WAIT2'), 'FIN_WAIT2');
    await until(() => ofType(a.id, 'tcp').some((e) => e.state === 'CLOSE_WAIT'), 'CLOSE_WAIT');
    await t.call('DELETE', `/v1/sockets/${a.id}`);
    await until(() => ofType(c.id, 'tcp').some((e) => e.state === 'TIME_WAIT'), 'TIME_WAIT');
    await t.call('DELETE', `/v1/sockets/${c.id}`);
    const states = ofType(c.id, 'tcp').map((e) => e.state);
    expect(states.indexOf('FIN_WAIT2')).toBeLessThan(states.indexOf('TIME_WAIT'));
    for (const e of ofType(c.id, 'tcp')) expect(e.previous).not.toBe(e.state);
    stop();
  });

  it('reports datagrams the kernel dropped', async () => {
    t = await startApp({ kernelSampleMs: 1000 });
    const seen: SockEvent[] = [];
    const unsubscribe = t.app.events.subscribe((e) => seen.push(e));
    const unobserve = t.app.events.observe(); // sampling runs for dashboards only
    const stop = () => (unsubscribe(), unobserve());
    const s = (await t.call('POST', '/v1/sockets', { family: 'inet', type: 'dgram', options: { SO_RCVBUF: 1 } })).body;
    const b = (await t.call('POST', `/v1/sockets/${s.id}/bind`, { address: '127.0.0.1', port: 0 })).body;
    const tx = (await t.call('POST', '/v1/sockets', { family: 'inet', type: 'dgram' })).body;
    t.app.kernelMonitor.tick(); // baseline: no drops
    for (let i = 0; i < 50; i++) await t.call('POST', `/v1/sockets/${tx.id}/send`, { data: 'x'.repeat(500), to: b.local });
    const total = (await t.call('GET', `/v1/sockets/${s.id}`)).body.kernel.drops;
    expect(total).toBeGreaterThan(0);
    t.app.kernelMonitor.tick();
    expect(seen.filter((e) => e.type === 'dropped' && e.socket === s.id).map((e) => [e.dropped, e.total])).toEqual([[total, total]]);
    stop();
  });

  it('samples nothing while no dashboard observes (a plain subscriber, like a consumer stream, does not count)', async () => {
    t = await startApp({ kernelSampleMs: 20 });
    const unsubscribe = t.app.events.subscribe(() => undefined);
    const before = t.app.events.headSeq;
    const l = (await t.call('POST', '/v1/sockets', { family: 'inet', type: 'stream' })).body;
    await t.call('POST', `/v1/sockets/${l.id}/bind`, { address: '127.0.0.1', port: 0 });
    await t.call('POST', `/v1/sockets/${l.id}/listen`, {});
    const after = t.app.events.headSeq;
    await new Promise((r) => setTimeout(r, 100));
    expect(t.app.events.headSeq).toBe(after);
    expect(after - before).toBe(3); // created, state bound, state listening: no tcp/pending
    unsubscribe();
  });
});
