/**
 * A minimal HTTP/1.1 client for one thing: GET a whole object body into one Buffer, cheaply.
 *
 * Why not node:http: its sockets allocate a fresh 64 KiB buffer per read and hand the body over
 * in chunks that are then copied into the block. For a 4 MiB block that is ~64 allocations, a
 * copy, and the garbage collection they cause — measured at ~20 ms of CPU per 4 MiB GET on the
 * development machine, which made cold reads CPU-bound. Here each socket reads (net.Socket
 * `onread`) straight into the block buffer once the headers are parsed: ~6 ms per 4 MiB.
 *
 * Scope, on purpose: plain-TCP `http:` endpoints (a local S3 server, MinIO, SeaweedFS), responses
 * with Content-Length, keep-alive connections reused one request at a time. A response this client
 * cannot take (chunked encoding, headers over 64 KiB) fails with `RawHttpUnsupported`, and the
 * caller uses node:http instead. TLS endpoints never come here.
 */
import net from 'node:net';

export interface RawResponse {
  status: number;
  /** Lower-case header names. */
  headers: Map<string, string>;
  body: Buffer;
}

/** The response has a shape this client does not handle; retry the request with node:http. */
export class RawHttpUnsupported extends Error {}

const HEADER_SCRATCH = 64 * 1024;
const EMPTY = Buffer.alloc(0);

interface Pending {
  resolve: (r: RawResponse) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** One keep-alive connection; serves one request at a time. */
class Conn {
  readonly sock: net.Socket;
  private readonly scratch = Buffer.allocUnsafe(HEADER_SCRATCH);
  private head = EMPTY;
  private status = 0;
  private headers = new Map<string, string>();
  private body: Buffer | undefined;
  private pos = 0;
  private pending: Pending | undefined;
  private closed = false;
  /** False once the server said `Connection: close` (or we gave up on the stream). */
  reusable = true;

  constructor(
    host: string,
    port: number,
    private readonly onIdle: (c: Conn) => void,
    private readonly onGone: (c: Conn) => void,
  ) {
    this.sock = net.connect({
      host,
      port,
      noDelay: true,
      keepAlive: true,
      onread: {
        // Headers land in the scratch buffer; the body goes straight into its final Buffer.
        buffer: () => (this.body !== undefined ? this.body.subarray(this.pos) : this.scratch),
        callback: (n: number, buf: Uint8Array) => {
          this.onData(n, buf);
          return true;
        },
      },
    } as net.NetConnectOpts);
    this.sock.on('error', (e) => this.fail(e));
    this.sock.on('close', () => {
      this.closed = true;
      this.fail(Object.assign(new Error('connection closed by the server'), { code: 'ECONNRESET' }));
      this.onGone(this);
    });
  }

  get busy(): boolean {
    return this.pending !== undefined;
  }

  get connecting(): boolean {
    return this.sock.connecting;
  }

  request(head: string, timeoutMs: number): Promise<RawResponse> {
    if (this.closed) return Promise.reject(Object.assign(new Error('connection closed'), { code: 'ECONNRESET' }));
    return new Promise<RawResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        const e = Object.assign(new Error(`no complete response within ${timeoutMs} ms`), { code: 'ETIMEDOUT', name: 'TimeoutError' });
        this.fail(e);
        this.sock.destroy();
      }, timeoutMs);
      this.pending = { resolve, reject, timer };
      this.sock.ref();
      this.head = EMPTY;
      this.status = 0;
      this.headers = new Map();
      this.body = undefined;
      this.pos = 0;
      this.sock.write(head);
    });
  }

  private onData(n: number, buf: Uint8Array): void {
    if (this.pending === undefined) {
      // Bytes nobody asked for (or a response after we gave up): the stream is out of step.
      this.reusable = false;
      this.sock.destroy();
      return;
    }
    if (this.body !== undefined) {
      this.pos += n;
      if (this.pos >= this.body.length) this.finish();
      return;
    }
    const chunk = Buffer.from(buf.buffer, buf.byteOffset, n);
    const all = this.head.length ? Buffer.concat([this.head, chunk]) : chunk;
    const end = all.indexOf('\r\n\r\n');
    if (end < 0) {
      if (all.length >= HEADER_SCRATCH) return this.unsupported('response headers over 64 KiB');
      this.head = Buffer.from(all); // the scratch buffer is reused by the next read
      return;
    }
    if (!this.parseHead(all.toString('latin1', 0, end))) return;
    const len = this.headers.get('content-length');
    if (this.headers.has('transfer-encoding') || len === undefined) return this.unsupported('no Content-Length');
    const size = Number(len);
    if (!Number.isSafeInteger(size) || size < 0) return this.unsupported(`bad Content-Length ${len}`);
    this.body = Buffer.allocUnsafe(size);
    const rest = all.length - (end + 4);
    if (rest > size) {
      this.reusable = false; // more than the body: nothing we sent asked for it
      this.sock.destroy();
      this.fail(new Error('response longer than its Content-Length'));
      return;
    }
    all.copy(this.body, 0, end + 4);
    this.pos = rest;
    this.head = EMPTY;
    if (this.pos >= size) this.finish();
  }

  private parseHead(text: string): boolean {
    const lines = text.split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!m) {
      this.unsupported(`bad status line ${JSON.stringify((lines[0] ?? '').slice(0, 40))}`);
      return false;
    }
    this.status = Number(m[1]);
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const c = line.indexOf(':');
      if (c > 0) this.headers.set(line.slice(0, c).trim().toLowerCase(), line.slice(c + 1).trim());
    }
    if ((this.headers.get('connection') ?? '').toLowerCase() === 'close') this.reusable = false;
    return true;
  }

  private unsupported(why: string): void {
    this.reusable = false;
    this.sock.destroy();
    this.fail(new RawHttpUnsupported(why));
  }

  private finish(): void {
    const p = this.pending!;
    this.pending = undefined;
    clearTimeout(p.timer);
    const r: RawResponse = { status: this.status, headers: this.headers, body: this.body! };
    this.body = undefined;
    // An idle keep-alive socket must not keep the process alive (a daemon that has unmounted
    // would otherwise linger until the server drops the connection), as node:http's agent does.
    if (this.reusable && !this.closed) {
      this.sock.unref();
      this.onIdle(this);
    } else this.sock.destroy();
    p.resolve(r);
  }

  private fail(e: Error): void {
    const p = this.pending;
    if (p === undefined) return;
    this.pending = undefined;
    this.reusable = false;
    clearTimeout(p.timer);
    p.reject(e);
  }

  close(): void {
    this.reusable = false;
    this.sock.destroy();
  }
}

/** Keep-alive connections to one `http:` host; at most `maxSockets` at once, FIFO waiters beyond. */
export class RawHttpPool {
  private readonly idle: Conn[] = [];
  private readonly all = new Set<Conn>();
  private readonly waiters: ((c: Conn) => void)[] = [];

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly maxSockets: number,
    private readonly connectTimeoutMs: number,
  ) {}

  /** Send `head` (a complete request without body) and read the whole response. */
  async request(head: string, timeoutMs: number): Promise<RawResponse> {
    const c = await this.acquire();
    if (c.connecting) await this.connected(c);
    return c.request(head, timeoutMs);
  }

  private acquire(): Promise<Conn> {
    const c = this.idle.pop();
    if (c) return Promise.resolve(c);
    if (this.all.size < this.maxSockets) {
      const n = new Conn(
        this.host,
        this.port,
        (x) => this.release(x),
        (x) => this.forget(x),
      );
      this.all.add(n);
      return Promise.resolve(n);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private connected(c: Conn): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        c.close();
        reject(Object.assign(new Error(`connect timed out after ${this.connectTimeoutMs} ms`), { code: 'ETIMEDOUT', name: 'TimeoutError' }));
      }, this.connectTimeoutMs);
      const done = (e?: Error) => {
        clearTimeout(t);
        c.sock.off('connect', ok);
        c.sock.off('error', bad);
        if (e) reject(e);
        else resolve();
      };
      const ok = () => done();
      const bad = (e: Error) => done(e);
      c.sock.once('connect', ok);
      c.sock.once('error', bad);
    });
  }

  private release(c: Conn): void {
    const w = this.waiters.shift();
    if (w) w(c);
    else this.idle.push(c);
  }

  private forget(c: Conn): void {
    this.all.delete(c);
    const i = this.idle.indexOf(c);
    if (i >= 0) this.idle.splice(i, 1);
    // A waiter can have the freed slot.
    const w = this.waiters.shift();
    if (w) void this.acquire().then(w);
  }

  close(): void {
    for (const c of this.all) c.close();
    this.all.clear();
    this.idle.length = 0;
  }
}
