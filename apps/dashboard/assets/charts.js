// Small SVG charts: a line chart with min–max band, gaps and a hover tooltip, and a
// distribution bar. Every text is inserted with textContent.
const NS = 'http://www.w3.org/2000/svg';

export const STATUS_COLORS = {
  healthy: '#22c55e', down: '#ef4444', error: '#f97316', timeout: '#eab308', unknown: '#6b7280',
};

export function num(v) {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(+v)) return +v;
  return null;
}

/** ISO string, seconds or milliseconds → epoch milliseconds (or null). */
export function parseTime(v) {
  const n = num(v);
  if (n != null) return n < 1e11 ? n * 1000 : n;
  if (typeof v !== 'string') return null;
  const ms = Date.parse(v);
  return Number.isNaN(ms) ? null : ms;
}

function svg(tag, attrs) {
  const el = document.createElementNS(NS, tag);
  for (const k in attrs) el.setAttribute(k, attrs[k]);
  return el;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/**
 * Draws (and remembers, for resizes) a line chart into `host`.
 * opts: {times, series: [{key, label, color, values, lo?, hi?}], height, compact, yMax,
 *        fmtValue(v), fmtTime(ms), fmtTimeLong(ms), noData, label, bandLabel}
 */
export function lineChart(host, opts) {
  host._chart = opts;
  draw(host);
}

/** Redraws every visible chart (after a resize). */
export function redrawAll() {
  for (const h of document.querySelectorAll('.chart')) if (h._chart && h.offsetParent) draw(h);
}

function draw(host) {
  const o = host._chart;
  const compact = !!o.compact;
  const W = Math.max(100, Math.round(host.clientWidth || 300));
  const H = o.height || (compact ? 44 : 170);
  const pad = compact ? { l: 2, r: 2, t: 4, b: 4 } : { l: 46, r: 12, t: 10, b: 24 };
  const series = (o.series || []).filter((s) => Array.isArray(s.values));
  const n = Math.max(0, ...series.map((s) => s.values.length));
  const rawTimes = (o.times || []).slice(0, n).map(parseTime);
  let useTime = rawTimes.length === n && n > 1 && rawTimes.every((t, i) => t != null && (i === 0 || t > rawTimes[i - 1]));
  const xsVal = useTime ? rawTimes : [...Array(n).keys()];

  host.replaceChildren();
  host.classList.add('chart');
  if (!compact && series.length > 1) {
    const lg = document.createElement('div');
    lg.className = 'chart-legend';
    for (const s of series) {
      const it = document.createElement('span');
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = s.color || 'currentColor';
      it.append(sw, s.label ?? s.key ?? '');
      lg.append(it);
    }
    host.append(lg);
  }
  let yMax = o.yMax ?? 0;
  let any = false;
  for (const s of series) {
    for (let i = 0; i < n; i++) {
      for (const v of [s.values[i], s.hi?.[i]]) {
        const x = num(v);
        if (x != null) { any = true; if (o.yMax == null && x > yMax) yMax = x; }
      }
    }
  }
  const root = svg('svg', {
    viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: 'chart-svg', role: 'img',
  });
  if (o.label) root.setAttribute('aria-label', o.label);
  host.append(root);
  if (!any) {
    const tx = svg('text', { x: W / 2, y: H / 2 + 4, 'text-anchor': 'middle', class: 'chart-empty' });
    tx.textContent = o.noData || 'No data';
    root.append(tx);
    return;
  }
  if (o.yMax == null) yMax = niceMax(yMax * 1.05);
  const x0 = xsVal[0], x1 = xsVal[n - 1];
  const sx = (v) => pad.l + (n <= 1 || x1 === x0 ? (W - pad.l - pad.r) / 2 : ((v - x0) / (x1 - x0)) * (W - pad.l - pad.r));
  const sy = (v) => pad.t + (1 - v / yMax) * (H - pad.t - pad.b);
  const X = xsVal.map(sx);

  // Time gaps larger than 2.5× the usual step also break lines (missing buckets).
  const broken = new Array(n).fill(false);
  if (useTime && n > 2) {
    const steps = rawTimes.slice(1).map((t, i) => t - rawTimes[i]).sort((a, b) => a - b);
    const med = steps[Math.floor(steps.length / 2)];
    for (let i = 1; i < n; i++) broken[i] = rawTimes[i] - rawTimes[i - 1] > med * 2.5;
  }

  if (!compact) {
    for (let k = 0; k <= 4; k++) {
      const v = (yMax * k) / 4;
      const y = sy(v);
      root.append(svg('line', { x1: pad.l, x2: W - pad.r, y1: y, y2: y, class: 'chart-grid' }));
      const tx = svg('text', { x: pad.l - 6, y: y + 4, 'text-anchor': 'end', class: 'chart-axis' });
      tx.textContent = o.fmtValue ? o.fmtValue(v, true) : String(v);
      root.append(tx);
    }
    if (useTime && o.fmtTime) {
      const idx = n > 2 ? [0, Math.floor((n - 1) / 2), n - 1] : [0, n - 1];
      idx.forEach((i, j) => {
        const anchor = j === 0 ? 'start' : j === idx.length - 1 ? 'end' : 'middle';
        const tx = svg('text', { x: X[i], y: H - 6, 'text-anchor': anchor, class: 'chart-axis' });
        tx.textContent = o.fmtTime(rawTimes[i]);
        root.append(tx);
      });
    }
  }

  for (const s of series) {
    // Band (min–max) — one polygon per contiguous run where both ends are known.
    if (s.lo && s.hi) {
      let run = [];
      const flush = () => {
        if (run.length) {
          const top = run.map((i) => `${X[i].toFixed(1)},${sy(num(s.hi[i])).toFixed(1)}`);
          const bot = run.slice().reverse().map((i) => `${X[i].toFixed(1)},${sy(num(s.lo[i])).toFixed(1)}`);
          if (run.length === 1) { top.push(`${(X[run[0]] + 0.5).toFixed(1)},${sy(num(s.hi[run[0]])).toFixed(1)}`); }
          root.append(svg('path', { d: `M${top.join('L')}L${bot.join('L')}Z`, class: 'series-band', fill: s.color || 'currentColor', 'data-series': s.key || '' }));
        }
        run = [];
      };
      for (let i = 0; i < n; i++) {
        if (broken[i]) flush();
        if (num(s.lo[i]) != null && num(s.hi[i]) != null) run.push(i); else flush();
      }
      flush();
    }
    // Line — a separate <path class="series-segment"> per run of non-null values.
    let pts = [];
    const flush = () => {
      if (pts.length) {
        const d = pts.length === 1 ? `M${pts[0]}h0.01` : `M${pts.join('L')}`;
        root.append(svg('path', { d, class: 'series-segment', stroke: s.color || 'currentColor', 'data-series': s.key || '' }));
      }
      pts = [];
    };
    for (let i = 0; i < n; i++) {
      if (broken[i]) flush();
      const v = num(s.values[i]);
      if (v == null) flush(); else pts.push(`${X[i].toFixed(1)},${sy(v).toFixed(1)}`);
    }
    flush();
  }

  // Hover: guide line, dots and a tooltip built from text nodes.
  const guide = svg('line', { y1: pad.t, y2: H - pad.b, class: 'chart-guide', visibility: 'hidden' });
  root.append(guide);
  const dots = series.map((s) => {
    const c = svg('circle', { r: compact ? 2.5 : 3.5, fill: s.color || 'currentColor', visibility: 'hidden', class: 'chart-dot' });
    root.append(c);
    return c;
  });
  const tip = document.createElement('div');
  tip.className = 'chart-tip';
  tip.hidden = true;
  host.append(tip);
  const hide = () => { tip.hidden = true; guide.setAttribute('visibility', 'hidden'); dots.forEach((d) => d.setAttribute('visibility', 'hidden')); };
  const show = (ev) => {
    const r = root.getBoundingClientRect();
    const px = ((ev.clientX - r.left) * W) / (r.width || W);
    let best = 0;
    for (let i = 1; i < n; i++) if (Math.abs(X[i] - px) < Math.abs(X[best] - px)) best = i;
    guide.setAttribute('x1', X[best]); guide.setAttribute('x2', X[best]);
    guide.setAttribute('visibility', 'visible');
    tip.replaceChildren();
    if (useTime) {
      const head = document.createElement('div');
      head.className = 'tip-time';
      head.textContent = (o.fmtTimeLong || o.fmtTime || ((t) => new Date(t).toLocaleString()))(rawTimes[best]);
      tip.append(head);
    }
    series.forEach((s, k) => {
      const v = num(s.values[best]);
      if (v == null) dots[k].setAttribute('visibility', 'hidden');
      else { dots[k].setAttribute('cx', X[best]); dots[k].setAttribute('cy', sy(v)); dots[k].setAttribute('visibility', 'visible'); }
      const row = document.createElement('div');
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = s.color || 'currentColor';
      const fv = (x) => (x == null ? '—' : o.fmtValue ? o.fmtValue(x) : String(x));
      row.append(sw, `${s.label ?? s.key ?? ''}: ${fv(v)}`);
      tip.append(row);
      const lo = num(s.lo?.[best]), hi = num(s.hi?.[best]);
      if (lo != null && hi != null) {
        const band = document.createElement('div');
        band.className = 'tip-band';
        band.textContent = `${o.bandLabel || 'min–max'}: ${fv(lo)} – ${fv(hi)}`;
        tip.append(band);
      }
    });
    tip.hidden = false;
    const hostW = host.clientWidth;
    const left = Math.min(Math.max(0, (X[best] * r.width) / W - tip.offsetWidth / 2), Math.max(0, hostW - tip.offsetWidth));
    tip.style.left = `${left}px`;
  };
  root.addEventListener('pointermove', show);
  root.addEventListener('pointerdown', show);
  root.addEventListener('pointerleave', hide);
}

/**
 * A horizontal stacked bar plus (optionally) a legend.
 * entries: [{key, label, count, color}]
 */
export function distBar(host, entries, { legend = true, fmtCount = String, fmtPct = (p) => `${p.toFixed(1)}%`, noData = '' } = {}) {
  host.replaceChildren();
  host.classList.add('dist');
  const list = entries.filter((e) => (num(e.count) ?? 0) > 0);
  const total = list.reduce((a, e) => a + num(e.count), 0);
  if (!total) {
    if (noData) { const p = document.createElement('p'); p.className = 'muted small'; p.textContent = noData; host.append(p); }
    return;
  }
  const bar = document.createElement('div');
  bar.className = 'dist-bar';
  bar.setAttribute('role', 'img');
  bar.setAttribute('aria-label', list.map((e) => `${e.label}: ${fmtCount(num(e.count))}`).join(', '));
  for (const e of list) {
    const seg = document.createElement('span');
    seg.className = 'dist-seg';
    seg.dataset.status = e.key;
    seg.style.flexGrow = String(num(e.count));
    seg.style.background = e.color;
    seg.title = `${e.label}: ${fmtCount(num(e.count))} (${fmtPct((100 * num(e.count)) / total)})`;
    bar.append(seg);
  }
  host.append(bar);
  if (!legend) return;
  const ul = document.createElement('ul');
  ul.className = 'dist-legend';
  for (const e of list) {
    const li = document.createElement('li');
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = e.color;
    li.append(sw, `${e.label} `);
    const b = document.createElement('b');
    b.textContent = `${fmtCount(num(e.count))} · ${fmtPct((100 * num(e.count)) / total)}`;
    li.append(b);
    ul.append(li);
  }
  host.append(ul);
}
