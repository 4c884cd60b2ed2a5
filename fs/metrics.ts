/**
 * A small Prometheus-style metrics registry: counters, gauges and histograms with optional labels,
 * rendered as Prometheus text exposition (format 0.0.4) for the `.stats` virtual file.
 *
 * Any layer may feed it (the FUSE transport, the metadata engine, the block store, the cache):
 * import `metrics` and create/fetch a metric by name. Creating a metric twice with the same name
 * returns the first one, so modules need not coordinate who registers what.
 *
 * Names follow upstream JuiceFS (`juicefs_` prefix) so `juicefs stats`/`juicefs bench`, which diff
 * `.stats`, understand a mount of this filesystem too. `STD` below lists the shared ones.
 *
 * Hot-path cost: an `inc`/`observe` is one Map lookup plus a few arithmetic ops; labelled ones
 * build the label key string first.
 */

export type Labels = Record<string, string>;

interface Metric {
  readonly name: string;
  readonly help: string;
  render(out: string[]): void;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labelKey(names: readonly string[], labels: Labels | undefined): string {
  if (names.length === 0 || labels === undefined) return '';
  let k = '';
  for (let i = 0; i < names.length; i++) {
    if (i > 0) k += ',';
    k += `${names[i]}="${escapeLabel(labels[names[i]!] ?? '')}"`;
  }
  return k;
}

function fmt(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

export class Counter implements Metric {
  private readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[] = [],
  ) {}
  inc(by = 1, labels?: Labels): void {
    const k = labelKey(this.labelNames, labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  /** Mirror a total kept elsewhere (a collector copying another module's stats object). */
  set(v: number, labels?: Labels): void {
    this.values.set(labelKey(this.labelNames, labels), v);
  }
  get(labels?: Labels): number {
    return this.values.get(labelKey(this.labelNames, labels)) ?? 0;
  }
  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`);
    if (this.values.size === 0 && this.labelNames.length === 0) out.push(`${this.name} 0`);
    for (const [k, v] of this.values) out.push(k ? `${this.name}{${k}} ${fmt(v)}` : `${this.name} ${fmt(v)}`);
  }
}

export class Gauge implements Metric {
  private readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[] = [],
    /** Sampled at render time instead of set (e.g. buffer use, cache size). */
    private readonly sample?: () => number | Array<[Labels, number]>,
  ) {}
  set(v: number, labels?: Labels): void {
    this.values.set(labelKey(this.labelNames, labels), v);
  }
  add(by: number, labels?: Labels): void {
    const k = labelKey(this.labelNames, labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  get(labels?: Labels): number {
    if (this.sample) {
      const s = this.sample();
      if (typeof s === 'number') return s;
    }
    return this.values.get(labelKey(this.labelNames, labels)) ?? 0;
  }
  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`);
    if (this.sample) {
      const s = this.sample();
      if (typeof s === 'number') out.push(`${this.name} ${fmt(s)}`);
      else for (const [l, v] of s) out.push(`${this.name}{${labelKey(Object.keys(l), l)}} ${fmt(v)}`);
      return;
    }
    if (this.values.size === 0 && this.labelNames.length === 0) out.push(`${this.name} 0`);
    for (const [k, v] of this.values) out.push(k ? `${this.name}{${k}} ${fmt(v)}` : `${this.name} ${fmt(v)}`);
  }
}

interface HistState {
  counts: Float64Array; // per bucket (non-cumulative)
  sum: number;
  count: number;
}

export class Histogram implements Metric {
  private readonly series = new Map<string, HistState>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[] = DEFAULT_BUCKETS,
    readonly labelNames: readonly string[] = [],
  ) {}
  observe(v: number, labels?: Labels): void {
    const k = labelKey(this.labelNames, labels);
    let s = this.series.get(k);
    if (!s) {
      s = { counts: new Float64Array(this.buckets.length), sum: 0, count: 0 };
      this.series.set(k, s);
    }
    // Buckets are few (≤ 30): a linear scan beats binary search at this size.
    const b = this.buckets;
    for (let i = 0; i < b.length; i++) {
      if (v <= b[i]!) {
        s.counts[i]!++;
        break;
      }
    }
    s.sum += v;
    s.count++;
  }
  /** Time an async operation in seconds. */
  async time<T>(fn: () => Promise<T>, labels?: Labels): Promise<T> {
    const t0 = process.hrtime.bigint();
    try {
      return await fn();
    } finally {
      this.observe(Number(process.hrtime.bigint() - t0) / 1e9, labels);
    }
  }
  count(labels?: Labels): number {
    return this.series.get(labelKey(this.labelNames, labels))?.count ?? 0;
  }
  sum(labels?: Labels): number {
    return this.series.get(labelKey(this.labelNames, labels))?.sum ?? 0;
  }
  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`);
    const series = this.series.size === 0 && this.labelNames.length === 0
      ? new Map([['', { counts: new Float64Array(this.buckets.length), sum: 0, count: 0 }]])
      : this.series;
    for (const [k, s] of series) {
      const sep = k ? `${k},` : '';
      let cum = 0;
      for (let i = 0; i < this.buckets.length; i++) {
        cum += s.counts[i]!;
        out.push(`${this.name}_bucket{${sep}le="${fmt(this.buckets[i]!)}"} ${cum}`);
      }
      out.push(`${this.name}_bucket{${sep}le="+Inf"} ${s.count}`);
      out.push(k ? `${this.name}_sum{${k}} ${fmt(s.sum)}` : `${this.name}_sum ${fmt(s.sum)}`);
      out.push(k ? `${this.name}_count{${k}} ${s.count}` : `${this.name}_count ${s.count}`);
    }
  }
}

/** Exponential buckets (start, factor, count), like prometheus.ExponentialBuckets. */
export function exponentialBuckets(start: number, factor: number, count: number): number[] {
  const out: number[] = [];
  let v = start;
  for (let i = 0; i < count; i++) {
    out.push(Number(v.toPrecision(6)));
    v *= factor;
  }
  return out;
}

/** Latency buckets used upstream: 100 µs × 1.5^n, 30 buckets (up to ~19 min). */
export const DEFAULT_BUCKETS = exponentialBuckets(0.0001, 1.5, 30);

/**
 * Runs at render time: copies another module's counters into metrics (returns nothing), or
 * returns ready-made exposition text (e.g. the block cache's cacheStatsToPrometheus()).
 */
export type Collector = () => void | string;

export class MetricsRegistry {
  private readonly metrics = new Map<string, Metric>();
  private readonly collectors = new Set<Collector>();

  /** Register a collector; the returned function removes it. */
  addCollector(c: Collector): () => void {
    this.collectors.add(c);
    return () => this.collectors.delete(c);
  }

  private get<T extends Metric>(name: string, make: () => T, kind: new (...a: never[]) => T): T {
    const m = this.metrics.get(name);
    if (m) {
      if (!(m instanceof kind)) throw new Error(`metric ${name} already registered with another type`);
      return m as T;
    }
    const n = make();
    this.metrics.set(name, n);
    return n;
  }

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.get(name, () => new Counter(name, help, labelNames), Counter);
  }
  gauge(name: string, help: string, labelNames: readonly string[] = [], sample?: () => number | Array<[Labels, number]>): Gauge {
    return this.get(name, () => new Gauge(name, help, labelNames, sample), Gauge);
  }
  histogram(name: string, help: string, labelNames: readonly string[] = [], buckets: readonly number[] = DEFAULT_BUCKETS): Histogram {
    return this.get(name, () => new Histogram(name, help, buckets, labelNames), Histogram);
  }
  /** Remove a metric (tests, or a sampled gauge whose owner went away). */
  unregister(name: string): void {
    this.metrics.delete(name);
  }
  /** Prometheus text exposition of every metric, sorted by name for stable output. */
  render(): string {
    const texts: string[] = [];
    for (const c of this.collectors) {
      try {
        const t = c();
        if (typeof t === 'string' && t) texts.push(t.endsWith('\n') ? t : t + '\n');
      } catch {
        // A broken collector must not take `.stats` down with it.
      }
    }
    const out: string[] = [];
    const names = [...this.metrics.keys()].sort();
    for (const n of names) this.metrics.get(n)!.render(out);
    return out.join('\n') + '\n' + texts.join('');
  }
}

/** The process-wide registry `.stats` shows. */
export const metrics = new MetricsRegistry();

const startTime = Date.now();

/**
 * Metrics shared across layers, created once here so every module uses the same names and
 * labels. Who feeds what:
 * - fs/ (VfsImpl): fuseOps, fuseReadBytes, fuseWrittenBytes, bufferUsed, readaheadUsed, metaOps
 *   (latency of every Meta call as seen by the VFS), and it mirrors ObjectBlockStore.stats and the
 *   block cache's stats() at render time (see VfsImpl.registerCollectors)
 * - metadata/ (engine): metaTxn, metaTxnRestart
 * - chunkstore/ (object wrapper/block store): objectRequest, objectBytes, objectErrors
 * - chunkstore/cache: blockcacheHits/Miss/HitBytes/MissBytes/Evict/Bytes/Blocks, blockcacheRead/Write
 */
export const STD = {
  fuseOps: metrics.histogram(
    'juicefs_fuse_ops_durations_histogram_seconds',
    'Operations latency distributions.',
    ['method'],
  ),
  fuseReadBytes: metrics.histogram(
    'juicefs_fuse_read_size_bytes',
    'Size distributions of read request.',
    [],
    exponentialBuckets(4096, 2, 9),
  ),
  fuseWrittenBytes: metrics.histogram(
    'juicefs_fuse_written_size_bytes',
    'Size distributions of write request.',
    [],
    exponentialBuckets(4096, 2, 9),
  ),
  metaOps: metrics.histogram(
    'juicefs_meta_ops_durations_histogram_seconds',
    'Meta operation latency distributions.',
    ['method'],
  ),
  metaTxn: metrics.histogram(
    'juicefs_transaction_durations_histogram_seconds',
    'Transactions latency distributions.',
  ),
  metaTxnRestart: metrics.counter('juicefs_transaction_restart', 'The number of times a transaction is restarted.'),
  objectRequest: metrics.histogram(
    'juicefs_object_request_durations_histogram_seconds',
    'Object requests latency distributions.',
    ['method'],
  ),
  objectBytes: metrics.counter('juicefs_object_request_data_bytes', 'Object requests size in bytes.', ['method']),
  objectErrors: metrics.counter('juicefs_object_request_errors', 'Failed requests to object store.', ['method']),
  blockcacheHits: metrics.counter('juicefs_blockcache_hits', 'read from cached block'),
  blockcacheMiss: metrics.counter('juicefs_blockcache_miss', 'missed read from cached block'),
  blockcacheHitBytes: metrics.counter('juicefs_blockcache_hit_bytes', 'read bytes from cached block'),
  blockcacheMissBytes: metrics.counter('juicefs_blockcache_miss_bytes', 'missed bytes from cached block'),
  blockcacheEvict: metrics.counter('juicefs_blockcache_evict', 'evicted cache blocks'),
  blockcacheRead: metrics.histogram('juicefs_blockcache_read_hist_seconds', 'read cached block latency distribution'),
  blockcacheWrite: metrics.histogram('juicefs_blockcache_write_hist_seconds', 'write cached block latency distribution'),
  bufferUsed: metrics.gauge('juicefs_used_buffer_size_bytes', 'size of currently used buffer.'),
  readaheadUsed: metrics.gauge('juicefs_used_read_buffer_size_bytes', 'size of currently used buffer for read'),
  uptime: metrics.gauge('juicefs_uptime', 'Total running time in seconds.', [], () => (Date.now() - startTime) / 1000),
  memory: metrics.gauge('juicefs_memory', 'Used memory in bytes.', [], () => process.memoryUsage().rss),
  cpu: metrics.gauge('juicefs_cpu_usage', 'Accumulated CPU usage in seconds.', [], () => {
    const c = process.cpuUsage();
    return (c.user + c.system) / 1e6;
  }),
};
