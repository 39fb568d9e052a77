// surge dashboard: polls GET /stats every 2 s and draws it; acts through the
// API (POST /tasks, /tasks/{id}/retry, /tasks/{id}/cancel). No dependencies,
// nothing fetched from anywhere but this server. Every value drawn from the
// server is set as text (never as HTML): task errors are untrusted input.
'use strict';

(() => {
  const POLL_MS = 2000;
  const HIDDEN_POLL_MS = 10000;
  const TOKEN_KEY = 'surge.apiToken';
  const STATES = ['pending', 'scheduled', 'running', 'retrying', 'succeeded', 'failed', 'dead', 'cancelled'];

  const $ = (id) => document.getElementById(id);
  let last = null;         // the last /stats document
  let lastOk = 0;          // when it arrived (ms)
  let timer = null;

  // ---------------------------------------------------------------- token

  const token = {
    get: () => sessionStorage.getItem(TOKEN_KEY) || '',
    set: (t) => t ? sessionStorage.setItem(TOKEN_KEY, t) : sessionStorage.removeItem(TOKEN_KEY),
  };

  function authHeaders() {
    const t = token.get();
    return t ? { Authorization: 'Bearer ' + t } : {};
  }

  // ---------------------------------------------------------------- DOM helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') node.textContent = String(v);
      else if (k === 'on') for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  // Puts `rows` in the table body, keeping the rows already there whose
  // key (`data-key`, default: position) and signature (`data-sig`, default:
  // text) are unchanged, so that a button is never replaced under the
  // pointer by a refresh; their `data-live` cells (relative times) are
  // updated in place.
  function fillBody(table, rows, columns, emptyText) {
    const body = table.tBodies[0];
    if (!rows.length) {
      const text = body.rows.length === 1 && !body.rows[0].dataset.key && body.rows[0].textContent;
      if (text !== emptyText) {
        body.replaceChildren(el('tr', {}, el('td', { colspan: columns, class: 'empty', text: emptyText })));
      }
      return;
    }
    rows.forEach((r, i) => {
      if (!r.dataset.key) r.dataset.key = String(i);
      if (!r.dataset.sig) r.dataset.sig = r.textContent;
    });
    const old = new Map(Array.from(body.rows).filter((r) => r.dataset.key).map((r) => [r.dataset.key, r]));
    const next = rows.map((r) => {
      const o = old.get(r.dataset.key);
      if (!o || o.dataset.sig !== r.dataset.sig) return r;
      const fresh = r.querySelectorAll('[data-live]');
      o.querySelectorAll('[data-live]').forEach((cell, i) => {
        if (fresh[i] && cell.textContent !== fresh[i].textContent) cell.textContent = fresh[i].textContent;
      });
      return o;
    });
    const current = Array.from(body.rows);
    if (next.length !== current.length || next.some((r, i) => r !== current[i])) body.replaceChildren(...next);
  }

  // ---------------------------------------------------------------- formatting

  const int = (n) => (n === null || n === undefined) ? '—' : Math.round(n).toLocaleString('en-US');
  function num(n, digits = 1) {
    if (n === null || n === undefined || Number.isNaN(n)) return '—';
    if (Math.abs(n) >= 100) return Math.round(n).toLocaleString('en-US');
    return n.toFixed(digits);
  }
  function ms(v) {
    if (v === null || v === undefined) return '—';
    if (v >= 10000) return (v / 1000).toFixed(1) + ' s';
    if (v >= 100) return Math.round(v) + ' ms';
    if (v >= 1) return v.toFixed(1) + ' ms';
    return v.toFixed(2) + ' ms';
  }
  function duration(seconds) {
    const s = Math.abs(seconds);
    if (s < 1) return s.toFixed(1) + ' s';
    if (s < 90) return Math.round(s) + ' s';
    if (s < 5400) return Math.round(s / 60) + ' min';
    if (s < 2 * 86400) return (s / 3600).toFixed(1) + ' h';
    return (s / 86400).toFixed(1) + ' d';
  }
  function when(iso) {
    if (!iso) return '—';
    const seconds = (Date.parse(iso) - Date.now()) / 1000;
    return seconds >= 0 ? 'in ' + duration(seconds) : duration(seconds) + ' ago';
  }
  const shortId = (id) => id.slice(0, 8) + '…' + id.slice(-4);

  // ---------------------------------------------------------------- figures

  function figures(dl, items) {
    dl.replaceChildren(...items.map(([key, label, value, title]) =>
      el('div', { title },
        el('dt', { text: label }),
        el('dd', { 'data-stat': key, text: value }))));
  }

  // ---------------------------------------------------------------- charts

  // One small line chart of series drawn from `points`; each series has a
  // key, a label and a line pattern (solid, dashed, dotted), so the chart
  // reads without colour. Missing values break the line.
  function chart(title, points, series, format, key) {
    const W = 300, H = 80, PAD_TOP = 10, PAD_BOTTOM = 12;
    const values = [];
    for (const s of series) for (const p of points) {
      const v = p[s.key];
      if (v !== null && v !== undefined) values.push(v);
    }
    const max = Math.max(1e-9, ...values);
    const t0 = points.length ? points[0].t : 0;
    const t1 = points.length ? points[points.length - 1].t : 1;
    const x = (t) => t1 > t0 ? ((t - t0) / (t1 - t0)) * W : W;
    const y = (v) => PAD_TOP + (1 - v / max) * (H - PAD_TOP - PAD_BOTTOM);
    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img' });
    root.append(svg('line', { class: 'grid', x1: 0, x2: W, y1: y(max), y2: y(max) }));
    root.append(svg('line', { class: 'grid', x1: 0, x2: W, y1: y(0), y2: y(0) }));
    for (const s of series) {
      let d = '';
      let pen = false;
      for (const p of points) {
        const v = p[s.key];
        if (v === null || v === undefined) { pen = false; continue; }
        d += `${pen ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      }
      if (d) root.append(svg('path', { class: 'series ' + (s.pattern || ''), d }));
    }
    const top = svg('text', { x: 2, y: 8 });
    top.textContent = 'max ' + format(max);
    root.append(top);
    const span = points.length > 1 ? duration((t1 - t0) / 1000) : '';
    const axis = svg('text', { x: 2, y: H - 2 });
    axis.textContent = span ? `${span} ago` : 'collecting…';
    const now = svg('text', { x: W - 2, y: H - 2, 'text-anchor': 'end' });
    now.textContent = 'now';
    root.append(axis, now);

    const latest = points.length ? points[points.length - 1] : {};
    const legend = series.map((s) => {
      const mark = s.pattern === 'dashed' ? '- - ' : s.pattern === 'dotted' ? '··· ' : '— ';
      return mark + s.label + ' ' + format(latest[s.key] ?? null);
    }).join('   ');
    root.setAttribute('aria-label', `${title}: ${legend}`);
    return el('figure', { class: 'chart', 'data-chart': key },
      el('figcaption', {}, el('span', { text: title }), el('span', { class: 'legend', text: legend })),
      root);
  }

  // ---------------------------------------------------------------- sections

  function renderService(s) {
    const sv = s.service;
    $('about').textContent = `v${s.version} · up ${duration(s.uptime_seconds)} · broker ${s.queue.backend}`;
    $('window-note').textContent = `Rates and percentiles over the last ${duration(s.window_seconds)}.`;
    $('percentiles-note').textContent = `(last ${duration(s.window_seconds)})`;
    const errorsTotal = Object.values(sv.errors).reduce((a, b) => a + b, 0);
    figures($('service-figures'), [
      ['requests_per_second', 'requests / s', num(sv.requests_per_second)],
      ['requests_total', 'requests total', int(sv.requests_total)],
      ['latency_p99', 'latency p99', ms(sv.latency && sv.latency.p99_ms)],
      ['in_flight', 'in flight (of max)', `${int(sv.in_flight)} of ${int(sv.max_in_flight)}`],
      ['shed_total', 'shed (503 overloaded)', `${int(sv.shed_total)} (${num(sv.shed_per_second)}/s)`],
      ['errors_total', 'error responses', `${int(errorsTotal)} (${num(sv.errors_per_second)}/s)`],
      ['runtime_lag_p99', 'runtime lag p99', ms(sv.runtime_lag && sv.runtime_lag.p99_ms),
        'How late a 50 ms timer fires: high values mean something blocks the async runtime'],
    ]);
    const pctRow = (key, label, p) => el('tr', { 'data-key': key },
      el('th', { scope: 'row', text: label }),
      el('td', { class: 'num', 'data-stat': key + '.count', text: int(p ? p.count : 0) }),
      ...['p50_ms', 'p90_ms', 'p99_ms', 'p999_ms', 'max_ms'].map((f) =>
        el('td', { class: 'num', 'data-stat': `${key}.${f}`, text: p ? ms(p[f]) : '—' })));
    fillBody($('percentiles-table'), [
      pctRow('latency', 'request latency', sv.latency),
      pctRow('runtime_lag', 'runtime lag (50 ms timer)', sv.runtime_lag),
    ], 7, '');
    const points = s.series.points;
    $('service-charts').replaceChildren(
      chart('Requests per second', points, [{ key: 'requests_per_second', label: 'req/s' }], num, 'requests'),
      chart('Latency', points, [
        { key: 'latency_p50_ms', label: 'p50' },
        { key: 'latency_p99_ms', label: 'p99', pattern: 'dashed' }], ms, 'latency'),
      chart('Runtime lag', points, [
        { key: 'lag_p99_ms', label: 'p99' },
        { key: 'lag_max_ms', label: 'max', pattern: 'dashed' }], ms, 'lag'),
      chart('Errors and shed per second', points, [
        { key: 'errors_per_second', label: 'errors' },
        { key: 'shed_per_second', label: 'shed', pattern: 'dashed' },
        { key: 'in_flight', label: 'in flight', pattern: 'dotted' }], num, 'errors'),
    );
    fillBody($('errors-table'), Object.entries(sv.errors).map(([cat, n]) =>
      el('tr', {}, el('th', { scope: 'row', text: cat }), el('td', { class: 'num', 'data-stat': 'errors.' + cat, text: int(n) }))), 2, '');
    fillBody($('status-table'), Object.entries(sv.status_classes).map(([cls, n]) =>
      el('tr', {}, el('th', { scope: 'row', text: cls }), el('td', { class: 'num', 'data-stat': 'status.' + cls, text: int(n) }))), 2, '');
  }

  function renderQueue(s) {
    const q = s.queue;
    const st = q.states;
    const read = q.read_ms_ago === null ? 'not read yet' : `broker read ${duration(q.read_ms_ago / 1000)} ago (took ${ms(q.read_took_ms)})`;
    $('queue-note').textContent = read + (q.error ? ` — last read failed: ${q.error}` : '');
    const waiting = (st.pending || 0) + (st.scheduled || 0) + (st.retrying || 0);
    figures($('queue-figures'), [
      ['queue.waiting', 'waiting', int(waiting), 'pending + scheduled + retrying'],
      ['queue.running', 'running', int(st.running)],
      ['queue.succeeded', 'succeeded (kept)', int(st.succeeded)],
      ['queue.dead', 'dead', int(st.dead)],
      ['queue.failed', 'failed', int(st.failed)],
      ['queue.retries_total', 'retries (this process)', int(q.retries_total)],
      ['queue.rescued_total', 'lease rescues (now dead)', `${int(q.rescued_total)} (${int(q.rescued_dead_total)})`],
      ['queue.time_limit_kills_total', 'time-limit kills', int(q.time_limit_kills_total)],
      ['queue.schedule_ticks_fired_total', 'cron ticks fired', int(q.schedule_ticks_fired_total)],
    ]);
    const points = s.series.points;
    $('queue-charts').replaceChildren(
      chart('Tasks finished per second', points, [{ key: 'tasks_per_second', label: 'tasks/s' }], num, 'tasks'),
      chart('Tasks waiting', points, [{ key: 'queue_waiting', label: 'waiting' }], int, 'waiting'),
    );

    const table = $('states-table');
    const names = q.queues.map((x) => x.name);
    table.tHead.replaceChildren(el('tr', {},
      el('th', { scope: 'col', text: 'state' }),
      el('th', { scope: 'col', class: 'num', text: 'all queues' }),
      ...names.map((n) => el('th', { scope: 'col', class: 'num', text: n }))));
    fillBody(table, STATES.map((state) => el('tr', {},
      el('th', { scope: 'row', class: 'state', 'data-state': state, text: state }),
      el('td', { class: 'num', 'data-stat': 'states.' + state, text: int(st[state] || 0) }),
      ...q.queues.map((x) => el('td', { class: 'num', text: int(x.counts[state] || 0) })))), 2, '');

    fillBody($('kinds-table'), q.kinds.map((k) => el('tr', { 'data-kind': k.kind },
      el('th', { scope: 'row', text: k.kind }),
      ...['succeeded', 'retry', 'failed', 'dead', 'cancelled'].map((o) =>
        el('td', { class: 'num', 'data-stat': `kinds.${k.kind}.${o}`, text: int(k.finished[o]) })),
      el('td', { class: 'num', text: num(k.finished_per_second) }),
      el('td', { class: 'num', text: ms(k.run && k.run.p50_ms) }),
      el('td', { class: 'num', text: ms(k.run && k.run.p99_ms) }),
      el('td', { class: 'num', text: ms(k.wait && k.wait.p99_ms) }))), 10, 'No task has run in this process yet.');
  }

  function actionButton(action, task) {
    const label = action === 'retry' ? 'Retry' : 'Cancel';
    return el('button', {
      type: 'button', 'data-action': action, 'data-task-id': task.id,
      'aria-label': `${label} task ${task.id}`, text: label,
      on: { click: (e) => act(action, task.id, e.currentTarget) },
    });
  }

  const hiddenNote = 'Hidden: enter the API token above to see this list.';

  function renderTasks(s) {
    const q = s.queue;
    const attempts = (t) => `${t.attempts} of ${t.max_retries + 1}`;
    const sig = (t) => JSON.stringify([t.state, t.attempts, t.error, t.run_at, t.finished_at]);
    fillBody($('failures-table'), (q.failures || []).map((t) => el('tr', { 'data-task-id': t.id, 'data-state': t.state, 'data-key': t.id, 'data-sig': sig(t) },
      el('td', {}, el('code', { title: t.id, text: shortId(t.id) })),
      el('td', { text: `${t.kind} (${t.queue})` }),
      el('td', { class: 'state', 'data-state': t.state, text: t.state }),
      el('td', { class: 'num', text: attempts(t) }),
      el('td', { class: 'error', text: t.error ? `${t.error.category}: ${t.error.message}` : '—' }),
      el('td', { 'data-live': true, text: t.finished_at ? when(t.finished_at) : 'next try ' + when(t.run_at) }),
      el('td', {}, t.state === 'retrying' ? actionButton('cancel', t) : actionButton('retry', t)))),
    7, q.failures ? 'No failed, dead or retrying task.' : hiddenNote);

    fillBody($('active-table'), (q.active || []).map((t) => el('tr', { 'data-task-id': t.id, 'data-state': t.state, 'data-key': t.id, 'data-sig': sig(t) },
      el('td', {}, el('code', { title: t.id, text: shortId(t.id) })),
      el('td', { text: t.kind }),
      el('td', { text: t.queue }),
      el('td', { class: 'state', 'data-state': t.state, text: t.state }),
      el('td', { class: 'num', text: attempts(t) }),
      el('td', { 'data-live': true, text: t.state === 'running' ? 'running' : when(t.run_at) }),
      el('td', {}, actionButton('cancel', t)))),
    7, q.active ? 'No running or waiting task.' : hiddenNote);

    fillBody($('workers-table'), (q.workers || []).map((w) => {
      const expired = w.lease_left_seconds < 0;
      return el('tr', { 'data-worker-id': w.id },
        el('td', {}, el('code', { title: w.id, text: shortId(w.id) })),
        el('td', { text: `${w.hostname} / ${w.pid}` }),
        el('td', { text: w.queues.join(', ') }),
        el('td', { class: 'num', text: int(w.concurrency) }),
        el('td', { text: duration(w.heartbeat_age_seconds) + ' ago' }),
        el('td', { class: expired ? 'expired' : '', text: expired
          ? `EXPIRED ${duration(w.lease_left_seconds)} ago`
          : `valid, ${duration(w.lease_left_seconds)} left` }));
    }), 6, q.workers ? 'No worker registered.' : hiddenNote);

    fillBody($('schedules-table'), (q.schedules || []).map((c) => el('tr', { 'data-schedule': c.name },
      el('th', { scope: 'row', text: c.name }),
      el('td', {}, el('code', { text: c.cron })),
      el('td', { text: c.timezone }),
      el('td', { text: c.kind }),
      el('td', { title: c.next_fire_at, text: `${new Date(c.next_fire_at).toLocaleString()} (${when(c.next_fire_at)})` }),
      el('td', { text: c.last_fired_at ? when(c.last_fired_at) : 'never' }))),
    6, q.schedules ? 'No schedule.' : hiddenNote);
  }

  function renderResources(s) {
    fillBody($('pools-table'), s.pools.map((p) => el('tr', {},
      el('th', { scope: 'row', text: p.name }),
      el('td', { text: p.backend }),
      ...[p.size, p.idle, p.in_use, p.waiting, p.max].map((v) => el('td', { class: 'num', text: int(v) })))), 7, 'No pool.');
    const caches = s.caches || [];
    fillBody($('caches-table'), caches.map((c) => el('tr', {},
      el('th', { scope: 'row', text: c.name }),
      el('td', { class: 'num', text: c.hit_ratio === null || c.hit_ratio === undefined ? '—' : (100 * c.hit_ratio).toFixed(1) + ' %' }),
      ...[c.hits, c.misses, c.entries, c.capacity, c.coalesced].map((v) => el('td', { class: 'num', text: int(v) })))),
    7, s.caches ? 'No cache registered.' : 'This server does not report caches.');
    const limiters = s.limiters || [];
    fillBody($('limiters-table'), limiters.map((l) => el('tr', {},
      el('th', { scope: 'row', text: l.name }),
      el('td', { text: l.algorithm }),
      ...[l.limit, l.in_flight, l.waiting].map((v) => el('td', { class: 'num', text: int(v) })),
      el('td', { class: 'num', text: ms(l.latency_floor_ms) }),
      el('td', { class: 'num', text: ms(l.latency_recent_ms) }),
      ...[l.overloads, l.rejected].map((v) => el('td', { class: 'num', text: int(v) })))),
    9, s.limiters ? 'No limiter registered.' : 'This server does not report limiters.');
  }

  function renderKinds(s) {
    const select = $('submit-kind');
    const kinds = s.queue.registered_kinds;
    const have = Array.from(select.options).map((o) => o.value);
    if (have.join() === kinds.join()) return;
    const chosen = select.value;
    select.replaceChildren(...kinds.map((k) => el('option', { value: k, text: k })));
    if (kinds.includes(chosen)) select.value = chosen;
    else if (kinds.includes('noop')) select.value = 'noop';
  }

  function renderAccess(s) {
    const form = $('token-form');
    const note = $('token-note');
    form.hidden = !s.access.token_required;
    $('token-forget').hidden = !token.get();
    if (!s.access.token_required) return;
    note.textContent = s.access.details
      ? 'Token accepted: task lists shown, actions allowed.'
      : 'This server has an API token: task lists and actions (submit, retry, cancel) need it.';
  }

  function render(s) {
    renderAccess(s);
    renderService(s);
    renderQueue(s);
    renderTasks(s);
    renderResources(s);
    renderKinds(s);
  }

  // ---------------------------------------------------------------- polling

  function setStatus(state, text) {
    const status = $('status');
    status.dataset.state = state;
    status.textContent = text;
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const resp = await fetch('/stats', { headers: authHeaders(), cache: 'no-store' });
      if (resp.status === 401) {
        token.set('');
        $('token-note').textContent = 'The token was refused: enter the right one.';
        setStatus('lost', 'token refused');
      } else if (!resp.ok) {
        setStatus('lost', `/stats answered ${resp.status}; retrying`);
      } else {
        last = await resp.json();
        lastOk = Date.now();
        render(last);
        setStatus('live', 'live · updated ' + new Date(lastOk).toLocaleTimeString());
        document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
      }
    } catch (e) {
      const age = lastOk ? ` (last update ${duration((Date.now() - lastOk) / 1000)} ago)` : '';
      setStatus('lost', 'connection lost, retrying' + age);
    }
    timer = setTimeout(refresh, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
  }

  document.addEventListener('visibilitychange', () => { if (!document.hidden) refresh(); });

  // ---------------------------------------------------------------- actions

  function showResult(outcome, text) {
    const box = $('action-result');
    box.hidden = false;
    box.dataset.outcome = outcome;
    box.textContent = text;
  }

  // The API's error shape: {"error": {"code", "message", "details"}}.
  function describeError(status, body) {
    const e = body && body.error;
    if (!e) return `HTTP ${status}`;
    const details = (e.details || []).map((d) => `${d.field}: ${d.message}`).join('; ');
    return `${status} ${e.code}: ${e.message}${details ? ' — ' + details : ''}`;
  }

  async function call(method, path, body) {
    const headers = authHeaders();
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let json = null;
    try { json = await resp.json(); } catch (_) { /* not JSON */ }
    return { ok: resp.ok, status: resp.status, json };
  }

  async function act(action, id, button) {
    if (button) button.disabled = true;
    try {
      const r = await call('POST', `/tasks/${encodeURIComponent(id)}/${action}`);
      if (r.ok) {
        const outcome = r.json.outcome.replace('_', ' ');
        showResult('ok', `${action === 'retry' ? 'Retry' : 'Cancel'} of task ${id}: ${outcome} (now ${r.json.task.state}).`);
      } else {
        showResult('error', `${action === 'retry' ? 'Retry' : 'Cancel'} of task ${id} failed: ${describeError(r.status, r.json)}`);
      }
    } catch (e) {
      showResult('error', `${action} of task ${id} failed: ${e}`);
    }
    refresh();
  }

  async function submit(event) {
    event.preventDefault();
    const body = { kind: $('submit-kind').value };
    const rawArgs = $('submit-args').value.trim();
    if (rawArgs) {
      try { body.args = JSON.parse(rawArgs); } catch (e) {
        showResult('error', `Not submitted: args is not valid JSON (${e.message}).`);
        return;
      }
    }
    const queue = $('submit-queue').value.trim();
    if (queue) body.queue = queue;
    const countdown = $('submit-countdown').value.trim();
    if (countdown) body.countdown = Number(countdown);
    const retries = $('submit-retries').value.trim();
    if (retries) body.max_retries = Number(retries);
    const button = $('submit-button');
    button.disabled = true;
    try {
      const r = await call('POST', '/tasks', body);
      if (r.ok) {
        const t = r.json.task;
        showResult('ok', `${r.json.created ? 'Created' : 'Already there (unique key)'}: task ${t.id}, ${t.kind}, ${t.state}.`);
        document.body.dataset.lastSubmitted = t.id;
      } else {
        showResult('error', `Not submitted: ${describeError(r.status, r.json)}`);
      }
    } catch (e) {
      showResult('error', `Not submitted: ${e}`);
    } finally {
      button.disabled = false;
    }
    refresh();
  }

  function start() {
    $('submit-form').addEventListener('submit', submit);
    $('token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      token.set($('token-input').value.trim());
      $('token-input').value = '';
      refresh();
    });
    $('token-forget').addEventListener('click', () => {
      token.set('');
      refresh();
    });
    refresh();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
