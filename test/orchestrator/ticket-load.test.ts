/**
 * Load generator for ticket issuance on loopback: N requests at concurrency C against a real
 * orchestrator (PostgreSQL + redis-server), latency percentiles and throughput printed. The
 * assertions are loose (no errors, every session distinct); the numbers are the point.
 * ARTIFACTS_TICKET_LOAD=requests,concurrency overrides the default 300,16 (kept small: CI shares
 * two cores with everything else).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { activeWorkspace, startStack, type DbKind, type Stack } from './harness.js';

const [REQUESTS, CONCURRENCY] = (process.env.ARTIFACTS_TICKET_LOAD ?? '300,16').split(',').map(Number) as [number, number];

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

describe.each<DbKind>(['postgres', 'pglite'])('ticket issuance load on %s', (kind) => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack(kind, { logger: false, reapIntervalMs: 1000, reconcileIntervalMs: 10_000 });
    await activeWorkspace(s, 'load');
  });
  afterAll(async () => {
    await s?.stop();
  });

  it(`issues ${REQUESTS} tickets at concurrency ${CONCURRENCY}`, async () => {
    const lat: number[] = [];
    const ids = new Set<string>();
    let next = 0;
    let errors = 0;
    const body = (i: number) =>
      JSON.stringify({ tenant: `t${i % 10}`, runtime: `r${i}`, workspace: 'alice/load', mode: i % 3 ? 'ro' : 'rw', ttl_seconds: 3600 });
    const worker = async () => {
      for (;;) {
        const i = next++;
        if (i >= REQUESTS) return;
        const t0 = performance.now();
        const res = await fetch(`${s.url}/platform/tickets`, {
          method: 'POST',
          headers: { authorization: `Bearer ${s.key}`, 'content-type': 'application/json' },
          body: body(i),
        });
        const j = (await res.json()) as { session_id?: string };
        lat.push(performance.now() - t0);
        if (res.status !== 201 || !j.session_id) errors++;
        else ids.add(j.session_id);
      }
    };
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const secs = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const cpuMs = (cpu.user + cpu.system) / 1000 / REQUESTS;
    lat.sort((a, b) => a - b);
    const r = (x: number) => x.toFixed(1);
    console.log(
      `[${kind}] ${REQUESTS} tickets, concurrency ${CONCURRENCY}: ${(REQUESTS / secs).toFixed(0)} tickets/s; ` +
        `latency ms p50 ${r(pct(lat, 50))} p90 ${r(pct(lat, 90))} p99 ${r(pct(lat, 99))} max ${r(lat[lat.length - 1]!)}; ` +
        `node CPU (orchestrator + load generator, one process) ${cpuMs.toFixed(1)} ms per ticket`,
    );
    expect(errors).toBe(0);
    expect(ids.size).toBe(REQUESTS);
  }, 600_000);
});
