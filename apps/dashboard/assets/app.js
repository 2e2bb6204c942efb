// Heartbeat dashboard. Plain ES module, no build step. Data from targets is only ever
// inserted as text (textContent / text nodes), never parsed as HTML.
import { t, initI18n, setLang, currentLang, languages } from './i18n.js';
import { lineChart, distBar, redrawAll, STATUS_COLORS, num, parseTime } from './charts.js';

const RANGES = ['live', '1h', '3h', '6h', '12h', '24h', '7d', '30d'];
const POLL_MS = { live: 2000, '1h': 10000, '3h': 10000, '6h': 15000, '12h': 15000, '24h': 20000, '7d': 30000, '30d': 30000 };
const STATUSES = ['healthy', 'down', 'error', 'timeout', 'unknown'];
const SERIES_COLORS = ['#3b82f6', '#a855f7', '#ec4899', '#14b8a6', '#f59e0b'];

const ls = {
  get(k) { try { return localStorage.getItem(k); } catch { return null; } },
  set(k, v) { try { localStorage.setItem(k, v); } catch { /* private mode */ } },
};

const state = {
  range: RANGES.includes(ls.get('hb-range')) ? ls.get('hb-range') : 'live',
  view: ls.get('hb-view') === 'table' ? 'table' : 'grid',
  search: '',
  filter: 'all',
  live: null, // last /api/live payload
  detail: null, // last /api/services/{name} payload (or {error})
  detailFor: null,
  waiting: false,
  timer: 0,
  seq: 0,
  ctrl: null,
  polls: 0,
};

const $ = (sel) => document.querySelector(sel);

/** createElement with attributes; children may be nodes or strings (→ text nodes). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

// ---------- formatting ----------
const nf = (d) => new Intl.NumberFormat(currentLang(), { maximumFractionDigits: d });
function fmtNum(v, d = 1) { const n = num(v); return n == null ? '—' : nf(d).format(n); }
function fmtMs(v) {
  const n = num(v);
  if (n == null) return '—';
  if (Math.abs(n) >= 10000) return `${nf(1).format(n / 1000)} s`;
  return `${nf(n < 1 ? 2 : n < 100 ? 1 : 0).format(n)} ms`;
}
function fmtPct(v, d = 1) { const n = num(v); return n == null ? '—' : `${nf(d).format(n)} %`; }
function fmtDuration(sec) {
  const s = num(sec);
  if (s == null) return typeof sec === 'string' && sec ? sec : '—';
  const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${m}m`;
  if (m) return `${m}m ${Math.floor(s % 60)}s`;
  return `${Math.floor(s)}s`;
}
function fmtTime(ms, long = false) {
  if (ms == null) return '—';
  const opts = long || ['7d', '30d'].includes(state.range)
    ? { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', ...(long ? { second: '2-digit' } : {}) }
    : { hour: '2-digit', minute: '2-digit', ...(state.range === 'live' ? { second: '2-digit' } : {}) };
  return new Intl.DateTimeFormat(currentLang(), opts).format(new Date(ms));
}
const fmtTimeLong = (ms) => fmtTime(ms, true);
function fmtWhen(v) { const ms = parseTime(v); return ms == null ? (v ? String(v) : '—') : fmtTimeLong(ms); }
function statusOf(s) { const k = String(s ?? 'unknown').toLowerCase(); return STATUSES.includes(k) ? k : 'unknown'; }
const statusLabel = (s) => t(`status.${statusOf(s)}`);

function statusPill(status, extraClass = '') {
  const s = statusOf(status);
  return h('span', { class: `target-status status-${s} ${extraClass}`.trim(), dataset: { status: s } }, statusLabel(s));
}

// ---------- network ----------
async function getJSON(url, signal) {
  const res = await fetch(url, { signal, cache: 'no-store', headers: { Accept: 'application/json' } });
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    const err = new Error(body?.error || `HTTP ${res.status}`);
    err.status = res.status;
    err.noData = res.status === 503;
    throw err;
  }
  return body;
}

function schedule() {
  clearTimeout(state.timer);
  if (!document.hidden) state.timer = setTimeout(poll, POLL_MS[state.range] || 10000);
}

async function poll() {
  clearTimeout(state.timer);
  if (document.hidden) return;
  const seq = ++state.seq;
  state.ctrl?.abort();
  const ctrl = new AbortController();
  state.ctrl = ctrl;
  const killer = setTimeout(() => ctrl.abort(), 15000);
  const range = state.range;
  const name = routeName();
  try {
    const liveP = getJSON(`api/live?range=${encodeURIComponent(range)}`, ctrl.signal);
    const detP = name == null ? null
      : getJSON(`api/services/${encodeURIComponent(name)}?range=${encodeURIComponent(range)}`, ctrl.signal)
        .catch((e) => (e.name === 'AbortError' ? Promise.reject(e) : { __error: e }));
    const [live, det] = await Promise.all([liveP, detP]);
    if (seq !== state.seq) return;
    state.live = live || {};
    state.waiting = false;
    if (name != null) { state.detail = det; state.detailFor = `${name}|${range}`; }
    state.polls++;
    setConn(null);
    render();
  } catch (e) {
    if (seq !== state.seq) return;
    if (e.noData) {
      state.waiting = true;
      state.live = null;
      setConn(null);
      render();
    } else if (e.name === 'AbortError' && ctrl.signal.aborted && seq !== state.seq) {
      return;
    } else {
      setConn(t('conn.lost'));
      if (!state.live && !state.waiting) $('#loading').hidden = true;
    }
  } finally {
    clearTimeout(killer);
    if (seq === state.seq) schedule();
  }
}

function setConn(msg) {
  const el = $('#conn-error');
  el.hidden = !msg;
  el.textContent = msg || '';
}

// ---------- routing ----------
function routeName() {
  const m = location.hash.match(/^#\/service\/(.+)$/);
  if (!m) return null;
  try { return decodeURIComponent(m[1]); } catch { return m[1]; }
}
const serviceHref = (name) => `#/service/${encodeURIComponent(name)}`;

// ---------- rendering ----------
function render() {
  const name = routeName();
  $('#loading').hidden = !!(state.live || state.waiting);
  $('#waiting').hidden = !state.waiting;
  $('#overview').hidden = state.waiting || !state.live || name != null;
  $('#detail').hidden = state.waiting || !state.live || name == null;
  renderLastUpdated();
  if (!state.live) return;
  renderCoverage();
  if (name == null) renderOverview();
  else renderDetail(name);
}

function renderLastUpdated() {
  const el = $('#last-updated');
  if (!state.live) { el.textContent = state.waiting ? t('waiting.title') : ''; return; }
  const ms = parseTime(state.live.last_updated);
  const now = new Intl.DateTimeFormat(currentLang(), { hour: '2-digit', minute: '2-digit', second: '2-digit' }).format(new Date());
  el.textContent = `${t('updated', { time: ms == null ? '—' : fmtTimeLong(ms) })} · ${t('checked', { time: now })}`;
  el.dataset.lastUpdated = state.live.last_updated ?? '';
  el.dataset.polls = String(state.polls);
}

function renderCoverage() {
  const c = num(state.live.coverage);
  $('#coverage').textContent = c == null ? '' : t('coverage', { pct: fmtPct(c <= 1 ? c * 100 : c, 0) });
}

function kv(dl, rows) {
  dl.replaceChildren(...rows.filter(Boolean).map(([k, v, attrs]) => h('div', attrs || {}, h('dt', {}, k), h('dd', {}, v))));
}

function meter(pct) {
  const n = Math.max(0, Math.min(100, num(pct) ?? 0));
  const cls = n >= 90 ? 'bad' : n >= 75 ? 'warn' : 'ok';
  return h('span', { class: 'metric' }, fmtPct(pct), h('span', { class: `meter ${cls}`, 'aria-hidden': 'true' }, h('span', { style: `width:${n}%` })));
}

const statsLine = (st) => h('span', { class: 'ministats' },
  ['avg', 'min', 'max', 'jitter'].map((k) => h('span', {}, h('small', { class: 'muted' }, t(`stats.${k}`)), h('b', {}, fmtMs(st?.[k])))));

function workerInfo(code) {
  const c = num(code);
  if (c == null) return { text: t('worker.null'), status: 'unknown' };
  if (c === 200) return { text: `${t('worker.200')} (200)`, status: 'healthy' };
  if (c === 220 || c === 221) return { text: `${t(`worker.${c}`)} (${c})`, status: 'timeout' };
  if (c === 500) return { text: `${t('worker.500')} (500)`, status: 'down' };
  return { text: t('worker.other', { code: c }), status: c >= 200 && c < 300 ? 'healthy' : 'error' };
}

function internetInfo(v) {
  if (v == null) return { text: t('net.disabled'), status: 'unknown' };
  const s = String(v).toLowerCase();
  const ok = v === true || v === 1 || ['true', '1', 'up', 'ok', 'online', 'connected', 'healthy'].includes(s);
  return ok ? { text: t('net.connected'), status: 'healthy' } : { text: t('net.offline'), status: 'down' };
}

function pill(info, id) {
  return h('span', { id, class: `pill status-${info.status}`, dataset: { status: info.status } }, info.text);
}

function history() { return state.live?.history || {}; }

function renderOverview() {
  const d = state.live;
  const sys = d.system || {};
  const hist = history();
  const times = hist.times || [];
  const containers = num(sys.containers);
  kv($('#host-kv'), [
    [t('host.cpu'), meter(sys.cpu), { dataset: { metric: 'cpu' } }],
    [t('host.ram'), meter(sys.ram), { dataset: { metric: 'ram' } }],
    [t('host.disk'), meter(sys.disk), { dataset: { metric: 'disk' } }],
    [t('host.containers'), containers == null || containers < 0 ? t('na') : fmtNum(containers, 0), { dataset: { metric: 'containers' } }],
    [t('host.uptime'), fmtDuration(sys.uptime), { dataset: { metric: 'uptime' } }],
  ]);
  const hs = hist.system || {};
  lineChart($('#host-chart'), {
    times, height: 120, yMax: 100, label: t('host.title'), noData: t('chart.noData'),
    fmtValue: (v) => fmtPct(v, 0), fmtTime, fmtTimeLong,
    series: [['cpu', 'host.cpu'], ['ram', 'host.ram'], ['disk', 'host.disk']]
      .map(([k, l], i) => ({ key: k, label: t(l), color: SERIES_COLORS[i], values: hs[k] || [] })),
  });

  const mon = d.monitor || {};
  const up = mon.uptime && typeof mon.uptime === 'object' ? (mon.uptime[state.range] ?? Object.values(mon.uptime)[0]) : mon.uptime;
  kv($('#agent-kv'), [
    [t('agent.heartbeat'), pill(workerInfo(mon.worker_status), 'worker-status')],
    [t('agent.uptime'), fmtPct(up, 2)],
    [t('agent.cycle'), statsLine(mon.stats), { class: 'kv-wide', dataset: { metric: 'cycle' } }],
  ]);
  const md = Array.isArray(mon.distribution) ? mon.distribution : [];
  distBar($('#agent-dist'), md.map((e, i) => {
    const w = workerInfo(num(e.name) ?? (e.name === 'null' || e.name == null ? null : e.name));
    const label = String(e.name ?? '—');
    return { key: label, label: num(e.name) != null || e.name == null ? w.text : label, count: e.value, color: STATUS_COLORS[STATUSES.includes(label) ? label : w.status] || SERIES_COLORS[i % 5] };
  }), { fmtCount: (c) => fmtNum(c, 0), fmtPct: (p) => fmtPct(p) });
  lineChart($('#agent-chart'), {
    times, height: 110, label: t('agent.cycle'), noData: t('chart.noData'), fmtValue: fmtMs, fmtTime, fmtTimeLong,
    series: [{ key: 'cycle', label: t('agent.cycle'), color: SERIES_COLORS[0], values: hist.cycle_duration || [] }],
  });

  const net = d.network || {};
  const uc = net.uptime_counts || {};
  kv($('#net-kv'), [
    [t('net.internet'), pill(internetInfo(net.internet_status), 'internet-status')],
    [t('net.uptime'), `${fmtPct(net.uptime, 2)}  (✓ ${fmtNum(uc.success, 0)} · ✗ ${fmtNum(uc.failure, 0)})`],
    [t('net.ping'), statsLine(net.stats), { class: 'kv-wide', dataset: { metric: 'ping' } }],
  ]);
  lineChart($('#net-chart'), {
    times, height: 110, label: t('net.ping'), noData: t('chart.noData'), fmtValue: fmtMs, fmtTime, fmtTimeLong,
    series: [{ key: 'ping', label: t('net.ping'), color: SERIES_COLORS[3], values: hist.ping || [] }],
  });

  renderFilters();
  renderTargets();
}

function services() { return Array.isArray(state.live?.services) ? state.live.services : []; }

function filtered() {
  const q = state.search.trim().toLowerCase();
  return services().filter((s) => (state.filter === 'all' || statusOf(s.status) === state.filter)
    && (!q || String(s.name ?? '').toLowerCase().includes(q)));
}

function renderFilters() {
  const counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));
  for (const s of services()) counts[statusOf(s.status)]++;
  const box = $('#status-filter');
  box.setAttribute('aria-label', t('targets.filter'));
  const chip = (key, label, count) => h('button', {
    type: 'button', class: `btn chip ${key === 'all' ? '' : `chip-${key}`}`, 'aria-pressed': String(state.filter === key),
    dataset: { filter: key },
    onclick: () => { state.filter = state.filter === key && key !== 'all' ? 'all' : key; renderFilters(); renderTargets(); },
  }, key === 'all' ? '' : h('span', { class: `dot status-${key}`, 'aria-hidden': 'true' }), `${label} `, h('b', {}, fmtNum(count, 0)));
  box.replaceChildren(chip('all', t('targets.all'), services().length),
    ...STATUSES.filter((s) => counts[s] || state.filter === s).map((s) => chip(s, statusLabel(s), counts[s])));
}

function latencySeries(name) {
  const hist = history();
  const det = hist.services_detail?.[name];
  const values = (det?.avg && det.avg.length ? det.avg : hist.services?.[name]) || [];
  return {
    key: name, label: t('chart.latency'), color: SERIES_COLORS[0], values,
    lo: Array.isArray(det?.min) ? det.min : undefined, hi: Array.isArray(det?.max) ? det.max : undefined,
  };
}

function sparkline(name) {
  const el = h('div', { class: 'chart spark' });
  // Drawn after insertion so it can measure its width.
  queueMicrotask(() => lineChart(el, {
    times: history().times || [], compact: true, height: 40, noData: t('chart.noData'), label: `${t('chart.latency')}: ${name}`,
    fmtValue: fmtMs, fmtTime, fmtTimeLong, bandLabel: t('chart.band'), series: [latencySeries(name)],
  }));
  return el;
}

function codeText(s) { const c = num(s.status_code); return c == null ? '' : `HTTP ${c}`; }

function targetCard(s) {
  const name = String(s.name ?? '');
  const st = s.stats || {};
  const status = statusOf(s.status);
  return h('article', { class: `target-card is-${status}`, dataset: { target: name } },
    h('div', { class: 'card-head' },
      h('a', { class: 'target-name', href: serviceHref(name) }, name),
      h('span', { class: 'target-type' }, t(`type.${s.service_type}`) === `type.${s.service_type}` ? String(s.service_type ?? '') : t(`type.${s.service_type}`))),
    h('div', { class: 'card-row' }, statusPill(status),
      h('span', { class: 'target-code muted' }, codeText(s)),
      h('span', { class: 'target-latency' }, fmtMs(s.latency))),
    h('p', { class: 'target-error', hidden: !s.error }, s.error == null ? '' : String(s.error)),
    sparkline(name),
    h('div', { class: 'card-foot muted small' },
      h('span', { class: 'target-uptime' }, `${t('stats.uptime')} ${fmtPct(st.uptime, 2)}`),
      h('span', {}, `${t('stats.avg')} ${fmtMs(st.avg)} · ${t('stats.jitter')} ${fmtMs(st.jitter)}`)),
    distEl(st.distribution, false));
}

function distEl(dist, legend) {
  const el = h('div', {});
  if (!legend && !(dist && Object.keys(dist).length)) return el;
  const entries = dist && typeof dist === 'object'
    ? Object.entries(dist).map(([k, c]) => ({ key: statusOf(k), label: statusLabel(k), count: c, color: STATUS_COLORS[statusOf(k)] }))
    : [];
  distBar(el, entries, { legend, fmtCount: (c) => fmtNum(c, 0), fmtPct: (p) => fmtPct(p), noData: legend ? t('chart.noData') : '' });
  return el;
}

function targetRow(s) {
  const name = String(s.name ?? '');
  const st = s.stats || {};
  return h('tr', { dataset: { target: name }, class: `is-${statusOf(s.status)}` },
    h('th', { scope: 'row' }, h('a', { class: 'target-name', href: serviceHref(name) }, name), h('div', { class: 'target-type muted small' }, String(s.service_type ?? ''))),
    h('td', {}, statusPill(s.status)),
    h('td', { class: 'col-code target-code' }, codeText(s)),
    h('td', { class: 'target-latency num' }, fmtMs(s.latency)),
    h('td', { class: 'num target-uptime' }, fmtPct(st.uptime, 2)),
    h('td', { class: 'col-trend' }, sparkline(name)),
    h('td', { class: 'target-error' }, s.error == null ? '' : String(s.error)));
}

function renderTargets() {
  for (const b of document.querySelectorAll('#view-toggle [data-view]')) b.setAttribute('aria-pressed', String(b.dataset.view === state.view));
  const box = $('#targets');
  const list = filtered();
  if (!list.length) {
    box.replaceChildren(h('p', { class: 'muted empty' }, services().length ? t('targets.none') : t('targets.empty')));
    return;
  }
  if (state.view === 'grid') {
    box.replaceChildren(h('div', { class: 'target-grid' }, list.map(targetCard)));
  } else {
    const cols = [['col.name', ''], ['col.status', ''], ['col.code', 'col-code'], ['col.latency', 'num'], ['col.uptime', 'num'], ['col.trend', 'col-trend'], ['col.error', '']];
    box.replaceChildren(h('div', { class: 'table-wrap' }, h('table', { class: 'target-table' },
      h('thead', {}, h('tr', {}, cols.map(([k, c]) => h('th', { scope: 'col', class: c }, t(k))))),
      h('tbody', {}, list.map(targetRow)))));
  }
}

// ---------- detail view ----------
// A push target's newest progress task: "import: 37.5 % (3/8), running".
function progressEl(p) {
  if (!p) return h('p', { class: 'target-progress', hidden: true });
  const bar = h('progress', { max: 100, value: Number(p.percentage) || 0 });
  return h('p', { class: 'target-progress', dataset: { status: String(p.status) } },
    h('span', {}, t('detail.progress')), ' ', bar, ' ',
    h('span', {}, `${String(p.task_name)}: ${fmtNum(p.percentage, 1)} % (${fmtNum(p.current_step, 0)}/${fmtNum(p.total_steps, 0)}), ${String(p.status)}`),
    p.message ? h('span', { class: 'muted' }, ` · ${String(p.message)}`) : '');
}

let detailKey = '';
function renderDetail(name) {
  const box = $('#detail');
  const live = services().find((s) => String(s.name) === name);
  const det = state.detailFor === `${name}|${state.range}` ? state.detail : null;
  const detOk = det && !det.__error ? det : null;
  // Avoid rebuilding (and losing the tooltip / copy state) when nothing changed.
  const key = JSON.stringify([currentLang(), state.range, live, detOk, det?.__error?.status, history().times?.length, history().times?.[0]]);
  if (key === detailKey && box.childElementCount) return;
  detailKey = key;

  const back = h('a', { class: 'back', href: '#/' }, t('detail.back'));
  if (!live && !detOk) {
    box.replaceChildren(back, h('section', { class: 'panel' }, h('h2', {}, t('detail.notFound', { name }))));
    return;
  }
  const st = { ...(live?.stats || {}), ...(detOk?.stats || {}) };
  const type = detOk?.service_type ?? live?.service_type ?? '';
  const head = h('section', { class: 'panel detail-head', dataset: { target: name } },
    h('div', { class: 'card-head' }, h('h2', { class: 'target-name' }, name), h('span', { class: 'target-type' }, String(type))),
    h('div', { class: 'card-row' }, statusPill(live?.status),
      h('span', { class: 'target-code muted' }, live ? codeText(live) : ''),
      h('span', { class: 'target-latency' }, fmtMs(live?.latency))),
    h('p', { class: 'target-error', hidden: !live?.error }, live?.error == null ? '' : String(live.error)),
    progressEl(detOk?.progress),
    h('dl', { class: 'kv stats-grid' },
      [['stats.uptime', fmtPct(st.uptime, 2)], ['stats.success', fmtNum(st.success, 0)], ['stats.failure', fmtNum(st.failure, 0)],
        ['stats.avg', fmtMs(st.avg)], ['stats.min', fmtMs(st.min)], ['stats.max', fmtMs(st.max)], ['stats.jitter', fmtMs(st.jitter)]]
        .map(([k, v]) => h('div', {}, h('dt', {}, t(k)), h('dd', {}, v)))));

  const chart = h('div', { class: 'chart', id: 'detail-chart' });
  const chartPanel = h('section', { class: 'panel' }, h('h3', {}, t('detail.history')), chart);

  const distPanel = h('section', { class: 'panel' }, h('h3', {}, t('detail.distribution')), distEl(detOk?.distribution || st.distribution, true));

  const incidents = Array.isArray(detOk?.incidents) ? detOk.incidents : [];
  const incPanel = h('section', { class: 'panel' }, h('h3', {}, t('detail.incidents')),
    incidents.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'plain' },
      h('thead', {}, h('tr', {}, ['inc.started', 'inc.ended', 'inc.duration', 'inc.cause', 'inc.firstError', 'inc.lastError'].map((k) => h('th', { scope: 'col' }, t(k))))),
      h('tbody', {}, incidents.map((i) => {
        const a = parseTime(i.started_at_ms), b = parseTime(i.ended_at_ms);
        return h('tr', { class: i.ended_at_ms == null ? 'ongoing' : '' },
          h('td', {}, fmtWhen(i.started_at_ms), i.maintenance ? h('span', { class: 'tag' }, t('inc.maintenance')) : null),
          h('td', {}, i.ended_at_ms == null ? h('span', { class: 'tag tag-bad' }, t('inc.ongoing')) : fmtWhen(i.ended_at_ms)),
          h('td', { class: 'num' }, a == null ? '—' : fmtDuration(((b ?? Date.now()) - a) / 1000)),
          h('td', {}, i.cause == null ? '' : (STATUSES.includes(String(i.cause)) ? statusLabel(i.cause) : String(i.cause))),
          h('td', { class: 'errtext' }, i.first_error == null ? '' : String(i.first_error)),
          h('td', { class: 'errtext' }, i.last_error == null ? '' : String(i.last_error)));
      })))) : h('p', { class: 'muted' }, t('detail.noIncidents')));

  const errors = Array.isArray(detOk?.errors) ? detOk.errors : [];
  const errPanel = h('section', { class: 'panel' }, h('h3', {}, t('detail.errors')),
    errors.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'plain' },
      h('thead', {}, h('tr', {}, ['err.message', 'err.count', 'err.lastSeen'].map((k) => h('th', { scope: 'col' }, t(k))))),
      h('tbody', {}, errors.map((e) => h('tr', {},
        h('td', { class: 'errtext' }, String(e.message ?? '')),
        h('td', { class: 'num' }, fmtNum(e.count, 0)),
        h('td', {}, fmtWhen(e.last_seen_ms))))))) : h('p', { class: 'muted' }, t('detail.noErrors')));

  const badgeUrl = new URL(`badge/${encodeURIComponent(name)}/status.svg`, location.href.split('#')[0]).href;
  const snippets = [`![${name}](${badgeUrl})`, `<img src="${badgeUrl}" alt="${name.replace(/"/g, '&quot;')}">`];
  const badgePanel = h('section', { class: 'panel' }, h('h3', {}, t('detail.badge')),
    h('p', {}, h('img', { src: badgeUrl, alt: `${name}: ${statusLabel(live?.status)}`, class: 'badge-img' })),
    h('p', { class: 'muted small' }, t('detail.badgeHelp')),
    snippets.map((sn) => {
      const input = h('input', { class: 'snippet', readonly: true, value: sn, 'aria-label': t('detail.badge'), onfocus: (e) => e.target.select() });
      const btn = h('button', { type: 'button', class: 'btn', onclick: async () => {
        try { await navigator.clipboard.writeText(sn); } catch { input.select(); document.execCommand?.('copy'); }
        btn.textContent = t('detail.copied');
        setTimeout(() => { btn.textContent = t('detail.copy'); }, 1500);
      } }, t('detail.copy'));
      return h('div', { class: 'snippet-row' }, input, btn);
    }));

  box.replaceChildren(back, head, chartPanel, h('div', { class: 'cards2' }, distPanel, badgePanel), incPanel, errPanel);

  const s = detOk?.series;
  const useDet = s && Array.isArray(s.avg) && Array.isArray(s.times);
  const fallback = latencySeries(name);
  lineChart(chart, {
    times: useDet ? s.times : history().times || [], height: 220, label: t('detail.history'), noData: t('chart.noData'),
    fmtValue: fmtMs, fmtTime, fmtTimeLong, bandLabel: t('chart.band'),
    series: [useDet
      ? { key: name, label: t('chart.latency'), color: SERIES_COLORS[0], values: s.avg, lo: Array.isArray(s.min) ? s.min : undefined, hi: Array.isArray(s.max) ? s.max : undefined }
      : fallback],
  });
}

// ---------- controls ----------
function setRange(r) {
  if (!RANGES.includes(r)) return;
  state.range = r;
  ls.set('hb-range', r);
  for (const b of document.querySelectorAll('[data-range]')) b.setAttribute('aria-pressed', String(b.dataset.range === r));
  poll();
}

function applyTheme(theme, remember) {
  document.documentElement.dataset.theme = theme;
  if (remember) ls.set('hb-theme', theme);
  const b = $('#theme-toggle');
  b.setAttribute('aria-pressed', String(theme === 'dark'));
  b.title = t('theme.toggle');
  b.setAttribute('aria-label', `${t('theme.toggle')} (${t(`theme.${theme}`)})`);
  b.querySelector('.theme-icon').textContent = theme === 'dark' ? '☾' : '☀';
  b.querySelector('.theme-label').textContent = t(`theme.${theme}`);
}

function wire() {
  for (const b of document.querySelectorAll('[data-range]')) b.addEventListener('click', () => setRange(b.dataset.range));
  for (const b of document.querySelectorAll('#view-toggle [data-view]')) {
    b.addEventListener('click', () => { state.view = b.dataset.view; ls.set('hb-view', state.view); renderTargets(); });
  }
  $('#search').addEventListener('input', (e) => { state.search = e.target.value; renderTargets(); });
  $('#theme-toggle').addEventListener('click', () => applyTheme(document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark', true));
  matchMedia('(prefers-color-scheme: dark)').addEventListener?.('change', (e) => {
    if (!ls.get('hb-theme')) applyTheme(e.matches ? 'dark' : 'light', false);
  });
  const sel = $('#lang-select');
  sel.replaceChildren(...languages().map((l) => h('option', { value: l.code, lang: l.code }, l.name || l.code)));
  sel.value = currentLang();
  sel.addEventListener('change', async () => {
    await setLang(sel.value);
    applyTheme(document.documentElement.dataset.theme, false);
    detailKey = '';
    render();
  });
  addEventListener('hashchange', () => { detailKey = ''; scrollTo(0, 0); render(); if (routeName() != null) poll(); });
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) { clearTimeout(state.timer); state.ctrl?.abort(); state.seq++; } else poll();
  });
  let rt = 0;
  addEventListener('resize', () => { clearTimeout(rt); rt = setTimeout(redrawAll, 120); });
}

async function main() {
  await initI18n();
  applyTheme(document.documentElement.dataset.theme === 'light' ? 'light' : 'dark', false);
  wire();
  for (const b of document.querySelectorAll('[data-range]')) b.setAttribute('aria-pressed', String(b.dataset.range === state.range));
  poll();
}

main();
