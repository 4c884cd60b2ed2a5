/**
 * Chunk resolution (juicefs-format.md 5.4): records are applied in list order, later ones paint
 * over earlier ones; the result covers [0, end of the last painted byte) with explicit id-0
 * segments for gaps. Adjacent segments are not merged (upstream does not either).
 */
import type { Slice } from './types.js';

export function buildSlices(records: readonly Slice[]): Slice[] {
  let segs: Slice[] = [];
  for (const r of records) {
    if (r.len === 0) continue;
    const a = r.pos;
    const b = r.pos + r.len;
    const next: Slice[] = [];
    let inserted = false;
    for (const s of segs) {
      const se = s.pos + s.len;
      if (se <= a) {
        next.push(s);
        continue;
      }
      if (s.pos >= b) {
        if (!inserted) {
          next.push({ pos: a, id: r.id, size: r.size, off: r.off, len: r.len });
          inserted = true;
        }
        next.push(s);
        continue;
      }
      // Overlap: keep the parts of s outside [a, b).
      if (s.pos < a) next.push({ pos: s.pos, id: s.id, size: s.size, off: s.off, len: a - s.pos });
      if (!inserted) {
        next.push({ pos: a, id: r.id, size: r.size, off: r.off, len: r.len });
        inserted = true;
      }
      if (se > b) next.push({ pos: b, id: s.id, size: s.size, off: s.off + (b - s.pos), len: se - b });
    }
    if (!inserted) next.push({ pos: a, id: r.id, size: r.size, off: r.off, len: r.len });
    segs = next;
  }
  // Fill gaps with holes so the result is a contiguous map from offset 0.
  const out: Slice[] = [];
  let at = 0;
  for (const s of segs) {
    if (s.pos > at) out.push({ pos: at, id: 0, size: 0, off: 0, len: s.pos - at });
    out.push(s);
    at = s.pos + s.len;
  }
  return out;
}

/** Segments overlapping [off, off+len) of a resolved chunk, clipped to that range. */
export function sliceRange(segs: readonly Slice[], off: number, len: number): Slice[] {
  const end = off + len;
  const out: Slice[] = [];
  for (const s of segs) {
    const se = s.pos + s.len;
    if (se <= off || s.pos >= end) continue;
    const a = Math.max(s.pos, off);
    const b = Math.min(se, end);
    out.push({ pos: a, id: s.id, size: s.size, off: s.off + (a - s.pos), len: b - a });
  }
  return out;
}
