/**
 * The lean GET client (chunkstore/object/http1.ts) against a node:http server we control: bodies
 * of every size land whole, connections are reused, and every shape it does not take (chunked
 * encoding, missing Content-Length) or every failure (server closing mid-body, a timeout) ends in
 * a clear error instead of wrong bytes. The S3 store's use of it is covered by s3.test.ts on a real
 * SeaweedFS.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawHttpPool, RawHttpUnsupported } from '../../chunkstore/object/http1.js';

let server: http.Server;
let port = 0;
const connections = new Set<string>();
const body = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + 7) & 0xff));

beforeAll(async () => {
  server = http.createServer((req, res) => {
    connections.add(`${req.socket.remotePort}`);
    const u = new URL(req.url!, 'http://x');
    const n = Number(u.searchParams.get('n') ?? 0);
    switch (u.pathname) {
      case '/len': {
        // Written in pieces with pauses, so the client sees headers and body split across reads.
        res.writeHead(200, { 'content-length': n });
        const b = body(n);
        let at = 0;
        const step = () => {
          if (at >= b.length) return res.end();
          res.write(b.subarray(at, at + 100_000));
          at += 100_000;
          setImmediate(step);
        };
        step();
        return;
      }
      case '/chunked':
        res.writeHead(200, { 'transfer-encoding': 'chunked' });
        res.end(body(n));
        return;
      case '/close':
        res.writeHead(200, { 'content-length': n, connection: 'close' });
        res.end(body(n));
        return;
      case '/cut':
        res.writeHead(200, { 'content-length': n });
        res.write(body(n).subarray(0, n >> 1));
        setTimeout(() => req.socket.destroy(), 20);
        return;
      case '/slow':
        setTimeout(() => res.end(), 2000);
        return;
      case '/404':
        res.writeHead(404, { 'content-length': 5 });
        res.end('nope!');
        return;
    }
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const get = (pool: RawHttpPool, path: string, timeoutMs = 5000) => pool.request(`GET ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n`, timeoutMs);

describe('RawHttpPool', () => {
  it('reads bodies of 0 B to 5 MiB whole, reusing one keep-alive connection', async () => {
    const pool = new RawHttpPool('127.0.0.1', port, 4, 2000);
    connections.clear();
    try {
      for (const n of [0, 1, 4096, 65_537, 1 << 20, 5 * (1 << 20) + 3]) {
        const r = await get(pool, `/len?n=${n}`);
        expect(r.status).toBe(200);
        expect(r.body.length).toBe(n);
        expect(r.body.equals(body(n))).toBe(true);
      }
      expect(connections.size).toBe(1);
      const many = await Promise.all(Array.from({ length: 8 }, (_, i) => get(pool, `/len?n=${10_000 + i}`)));
      many.forEach((r, i) => expect(r.body.equals(body(10_000 + i))).toBe(true));
      expect(connections.size).toBeLessThanOrEqual(4);
      const nf = await get(pool, '/404');
      expect([nf.status, nf.body.toString()]).toEqual([404, 'nope!']);
    } finally {
      pool.close();
    }
  });

  it('Connection: close is honoured; the next request opens a new connection', async () => {
    const pool = new RawHttpPool('127.0.0.1', port, 1, 2000);
    connections.clear();
    try {
      expect((await get(pool, '/close?n=300')).body.equals(body(300))).toBe(true);
      expect((await get(pool, '/len?n=300')).body.equals(body(300))).toBe(true);
      expect(connections.size).toBe(2);
    } finally {
      pool.close();
    }
  });

  it('chunked responses are refused as unsupported (the caller falls back to node:http)', async () => {
    const pool = new RawHttpPool('127.0.0.1', port, 1, 2000);
    try {
      await expect(get(pool, '/chunked?n=1000')).rejects.toBeInstanceOf(RawHttpUnsupported);
      expect((await get(pool, '/len?n=10')).body.equals(body(10))).toBe(true);
    } finally {
      pool.close();
    }
  });

  it('a body cut short by the server is a transient error, never a short buffer', async () => {
    const pool = new RawHttpPool('127.0.0.1', port, 1, 2000);
    try {
      await expect(get(pool, '/cut?n=200000')).rejects.toMatchObject({ code: 'ECONNRESET' });
      expect((await get(pool, '/len?n=10')).body.equals(body(10))).toBe(true);
    } finally {
      pool.close();
    }
  });

  it('a response slower than the deadline fails with ETIMEDOUT; a refused connect fails at once', async () => {
    const pool = new RawHttpPool('127.0.0.1', port, 1, 2000);
    try {
      await expect(get(pool, '/slow', 200)).rejects.toMatchObject({ code: 'ETIMEDOUT' });
      expect((await get(pool, '/len?n=10')).body.equals(body(10))).toBe(true);
    } finally {
      pool.close();
    }
    const dead = new RawHttpPool('127.0.0.1', 1, 1, 2000);
    await expect(get(dead, '/len?n=1')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    dead.close();
  });
});
