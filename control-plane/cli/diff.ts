// A unified diff of two texts, line by line (as `diff -u` writes one, with 3 lines of context), for
// `wasmesh apply --dry-run`. Resources are small: a longest-common-subsequence table is enough.

type Op = { op: " " | "-" | "+"; line: string };

/** Past this many cells the table is not built: what differs is shown removed, then added. */
const MAX_CELLS = 4_000_000;

function lineOps(before: string[], after: string[]): Op[] {
  // What both start and end with is context: only the middle needs the table.
  let head = 0;
  while (head < before.length && head < after.length && before[head] === after[head]) head++;
  let tail = 0;
  while (
    tail < before.length - head &&
    tail < after.length - head &&
    before[before.length - 1 - tail] === after[after.length - 1 - tail]
  )
    tail++;
  const same = (lines: string[]): Op[] => lines.map((line) => ({ op: " ", line }));
  const a = before.slice(head, before.length - tail);
  const b = after.slice(head, after.length - tail);
  const middle =
    a.length * b.length > MAX_CELLS
      ? [...a.map((line): Op => ({ op: "-", line })), ...b.map((line): Op => ({ op: "+", line }))]
      : middleOps(a, b);
  return [...same(before.slice(0, head)), ...middle, ...same(before.slice(before.length - tail))];
}

function middleOps(a: string[], b: string[]): Op[] {
  const n = a.length;
  const m = b.length;
  // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--)
      (lcs[i] as Uint32Array)[j] =
        a[i] === b[j]
          ? ((lcs[i + 1] as Uint32Array)[j + 1] as number) + 1
          : Math.max((lcs[i + 1] as Uint32Array)[j] as number, (lcs[i] as Uint32Array)[j + 1] as number);
  const ops: Op[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      ops.push({ op: " ", line: a[i] as string });
      i++;
      j++;
    } else if (
      j < m &&
      (i === n || ((lcs[i] as Uint32Array)[j + 1] as number) >= ((lcs[i + 1] as Uint32Array)[j] as number))
    ) {
      ops.push({ op: "+", line: b[j] as string });
      j++;
    } else {
      ops.push({ op: "-", line: a[i] as string });
      i++;
    }
  }
  // Within a run of changes, removals before additions, as diff -u writes them.
  for (let k = 0; k < ops.length; ) {
    let end = k;
    while (end < ops.length && ops[end]?.op !== " ") end++;
    if (end > k) {
      const run = ops.slice(k, end);
      ops.splice(k, end - k, ...run.filter((o) => o.op === "-"), ...run.filter((o) => o.op === "+"));
      k = end;
    } else k++;
  }
  return ops;
}

const CONTEXT = 3;

/** `before` → `after` as unified-diff hunks (`@@ -l,n +l,n @@`), without the file header; "" if equal. */
export function unifiedDiff(before: string, after: string): string {
  const split = (text: string) => (text === "" ? [] : text.replace(/\n$/, "").split("\n"));
  const ops = lineOps(split(before), split(after));
  const changed = ops.flatMap((o, k) => (o.op === " " ? [] : [k]));
  if (changed.length === 0) return "";
  // Hunks: each change with its context, merged where contexts touch.
  const hunks: [number, number][] = [];
  for (const k of changed) {
    const start = Math.max(0, k - CONTEXT);
    const end = Math.min(ops.length, k + CONTEXT + 1);
    const last = hunks[hunks.length - 1];
    if (last !== undefined && start <= last[1]) last[1] = Math.max(last[1], end);
    else hunks.push([start, end]);
  }
  const lines: string[] = [];
  for (const [start, end] of hunks) {
    // Line numbers of the hunk's first line in each text (1-based; 0 for an empty side).
    let a = 1;
    let b = 1;
    for (let k = 0; k < start; k++) {
      if (ops[k]?.op !== "+") a++;
      if (ops[k]?.op !== "-") b++;
    }
    const part = ops.slice(start, end);
    const aCount = part.filter((o) => o.op !== "+").length;
    const bCount = part.filter((o) => o.op !== "-").length;
    lines.push(`@@ -${aCount === 0 ? a - 1 : a},${aCount} +${bCount === 0 ? b - 1 : b},${bCount} @@`);
    for (const o of part) lines.push(`${o.op}${o.line}`);
  }
  return lines.join("\n");
}
