/** A minimal Prometheus registry: counters and histograms with labels, text exposition format. */

type Labels = Record<string, string>;

function labelKey(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return '';
  return '{' + keys.map((k) => `${k}="${labels[k]!.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`).join(',') + '}';
}

export class Counter {
  private values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(labels: Labels = {}, by = 1): void {
    const k = labelKey(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n`;
    for (const [k, v] of this.values) out += `${this.name}${k} ${v}\n`;
    return out;
  }
}

export class Gauge {
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly read: () => number,
  ) {}
  render(): string {
    return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} gauge\n${this.name} ${this.read()}\n`;
  }
}

const DEFAULT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Histogram {
  private series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly buckets = DEFAULT_BUCKETS,
  ) {}
  observe(seconds: number, labels: Labels = {}): void {
    const k = labelKey(labels);
    let s = this.series.get(k);
    if (!s) {
      s = { labels, counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0 };
      this.series.set(k, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (seconds <= this.buckets[i]!) s.counts[i]!++;
    s.sum += seconds;
    s.count++;
  }
  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} histogram\n`;
    for (const s of this.series.values()) {
      this.buckets.forEach((b, i) => {
        out += `${this.name}_bucket${labelKey({ ...s.labels, le: String(b) })} ${s.counts[i]}\n`;
      });
      out += `${this.name}_bucket${labelKey({ ...s.labels, le: '+Inf' })} ${s.count}\n`;
      out += `${this.name}_sum${labelKey(s.labels)} ${s.sum}\n${this.name}_count${labelKey(s.labels)} ${s.count}\n`;
    }
    return out;
  }
}

export class Metrics {
  readonly httpRequests = new Counter('artifacts_orchestrator_http_requests_total', 'HTTP requests by route, method and status.');
  readonly httpDuration = new Histogram('artifacts_orchestrator_http_request_duration_seconds', 'HTTP request latency by route.');
  readonly sessionsCreated = new Counter('artifacts_orchestrator_mount_sessions_created_total', 'Mount sessions created, by mode and kind (owner|ticket).');
  readonly sessionsRevoked = new Counter('artifacts_orchestrator_mount_sessions_revoked_total', 'Mount sessions ended, by reason.');
  readonly aclFailures = new Counter('artifacts_orchestrator_acl_failures_total', 'Redis ACL operations that failed, by operation.');
  readonly reconciled = new Counter('artifacts_orchestrator_acl_users_reconciled_total', 'ACL users re-created or removed by reconciliation, by action.');
  readonly workspaces = new Counter('artifacts_orchestrator_workspace_transitions_total', 'Workspace status transitions, by status.');
  private gauges: Gauge[] = [];

  gauge(name: string, help: string, read: () => number): void {
    this.gauges.push(new Gauge(name, help, read));
  }

  render(): string {
    return [
      this.httpRequests,
      this.httpDuration,
      this.sessionsCreated,
      this.sessionsRevoked,
      this.aclFailures,
      this.reconciled,
      this.workspaces,
      ...this.gauges,
    ]
      .map((m) => m.render())
      .join('');
  }
}
