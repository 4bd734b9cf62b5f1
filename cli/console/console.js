// The console of `avap dev`: plain JavaScript, no framework, no build step
// (docs/CLI.md, "The console", says why). Everything goes through the
// server's JSON API under /api/console/ (cli/src/console/) and the routes
// of /openapi.json.
import { compileGrammar, tokenizeLine, classOf } from './highlight.js';

const API = '/api/console';
const $ = (id) => document.getElementById(id);
const src = $('source');

// What the page holds.
const state = {
  info: null,
  grammar: null,
  commands: new Map(),
  scripts: [],
  operations: [],
  // The open script: its name, the version read from disk (null: not on
  // disk yet), the text as saved.
  name: null,
  version: null,
  saved: '',
  diagnostics: [],
  // The line of the last run's error, and its message.
  runError: null,
  run: null,
};

// ---------------------------------------------------------------- helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function escapeHtml(text) {
  return text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
}

/** A call to the console's API: `{ ok, status, body }`. */
async function api(path, { method = 'GET', body, signal } = {}) {
  const options = { method, signal, headers: {} };
  if (body !== undefined) {
    options.headers['content-type'] = 'application/json';
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path.startsWith('/') ? path : `${API}/${path}`, options);
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = text;
  }
  return { ok: response.ok, status: response.status, body: parsed };
}

function flash(text, error = false) {
  const node = $('flash');
  node.textContent = text;
  node.style.setProperty('color', error ? 'var(--error)' : 'var(--ok)');
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => (node.textContent = ''), 4000);
}

const pretty = (value) => JSON.stringify(value, null, 2);
const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

// Columns from the server count Unicode scalar values; JavaScript strings
// count UTF-16 units.
function utf16Index(line, column) {
  let index = 0;
  let count = 1;
  for (const ch of line) {
    if (count >= column) break;
    index += ch.length;
    count++;
  }
  return index;
}

// ----------------------------------------------------------------- editor

const LINE = 20;
const PAD = 8;
let charWidth = 7.8;

function measure() {
  const probe = el('span', {}, 'x'.repeat(100));
  $('highlight').append(probe);
  charWidth = probe.getBoundingClientRect().width / 100 || charWidth;
  probe.remove();
}

function highlightLine(line) {
  if (!state.grammar || line.length > 4000) return escapeHtml(line);
  // Neighbouring tokens of one colour make one span.
  const runs = [];
  for (const token of tokenizeLine(state.grammar, line)) {
    const cls = classOf(token.scopes);
    const last = runs[runs.length - 1];
    if (last && last.cls === cls) last.end = token.end;
    else runs.push({ cls, start: token.start, end: token.end });
  }
  return runs
    .map(({ cls, start, end }) => {
      const text = escapeHtml(line.slice(start, end));
      return cls ? `<span class="${cls}">${text}</span>` : text;
    })
    .join('');
}

// The diagnostics' ranges on one line, underlined, the text transparent.
function marksLine(line, number) {
  const row = el('div');
  if (state.runError && state.runError.line === number) row.className = 'run-error';
  const ranges = state.diagnostics
    .filter((d) => d.line === number)
    .map((d) => ({
      from: utf16Index(line, d.column),
      to: Math.max(utf16Index(line, d.end_column), utf16Index(line, d.column) + 1),
      cls: `mark-${d.severity}`,
    }))
    .sort((a, b) => a.from - b.from);
  let at = 0;
  const padded = line + ' ';
  for (const range of ranges) {
    if (range.from < at) continue;
    row.append(padded.slice(at, range.from), el('span', { class: range.cls }, padded.slice(range.from, range.to)));
    at = range.to;
  }
  row.append(padded.slice(at, line.length));
  return row;
}

function render() {
  const lines = src.value.split('\n');
  const many = lines.length > 20000;
  $('highlight').innerHTML = (many ? lines.map(escapeHtml) : lines.map(highlightLine)).join('\n') + '\n';
  $('marks').replaceChildren(...lines.map((line, i) => marksLine(line, i + 1)));
  const byLine = new Map();
  for (const d of state.diagnostics) {
    const list = byLine.get(d.line) || [];
    list.push(`${d.severity}: ${d.message}`);
    byLine.set(d.line, list);
  }
  const gutter = lines.map((_, i) => {
    const n = i + 1;
    const row = el('div', {}, n);
    if (state.runError && state.runError.line === n) row.className = 'has-run-error';
    else if (state.diagnostics.some((d) => d.line === n && d.severity === 'error')) row.className = 'has-error';
    else if (byLine.has(n)) row.className = 'has-warning';
    if (byLine.has(n)) row.title = byLine.get(n).join('\n');
    return row;
  });
  $('gutter').replaceChildren(...gutter);
  syncScroll();
  renderDiagnostics();
  $('dirty').hidden = !isDirty();
}

function syncScroll() {
  const x = -src.scrollLeft;
  const y = -src.scrollTop;
  $('highlight').style.setProperty('transform', `translate(${x}px, ${y}px)`);
  $('marks').style.setProperty('transform', `translate(${x}px, ${y}px)`);
  $('gutter').style.setProperty('transform', `translateY(${y}px)`);
}

function renderDiagnostics() {
  const items = state.diagnostics.map((d) =>
    el(
      'li',
      { class: d.severity, onclick: () => goTo(d.line, d.column) },
      `${d.line}:${d.column} ${d.severity}: ${d.message}`,
    ),
  );
  if (state.runError) {
    items.unshift(
      el(
        'li',
        { class: 'run-error', onclick: () => goTo(state.runError.line, 1) },
        `${state.runError.line}: run: ${state.runError.message}`,
      ),
    );
  }
  $('diagnostics').replaceChildren(...items);
  const errors = state.diagnostics.filter((d) => d.severity === 'error').length;
  const warnings = state.diagnostics.length - errors;
  const status = $('check-status');
  status.textContent = errors || warnings ? `${plural(errors, 'error')}, ${plural(warnings, 'warning')}` : '✓ no problems';
  status.className = `check-status ${errors ? 'bad' : 'ok'}`;
}

function goTo(line, column = 1) {
  const lines = src.value.split('\n');
  let offset = 0;
  for (let i = 0; i < Math.min(line - 1, lines.length); i++) offset += lines[i].length + 1;
  offset += utf16Index(lines[line - 1] || '', column);
  src.focus();
  src.setSelectionRange(offset, offset);
  src.scrollTop = Math.max(0, (line - 4) * LINE);
  syncScroll();
}

// Unsaved: the text differs from the file, or there is no file.
const isDirty = () => state.name !== null && (src.value !== state.saved || state.version === null);

// Diagnostics as you type: the server's, for the text now, after a pause.
let checkSeq = 0;
let checkTimer = null;
function scheduleCheck() {
  clearTimeout(checkTimer);
  checkTimer = setTimeout(check, 150);
}
async function check() {
  const seq = ++checkSeq;
  const text = src.value;
  const { ok, body } = await api('check', { method: 'POST', body: { source: text } });
  if (seq !== checkSeq || !ok) return;
  state.diagnostics = body.diagnostics;
  render();
}

function onInput() {
  // A run's error mark belongs to the text it ran.
  state.runError = null;
  render();
  scheduleCheck();
}

function insertText(text) {
  // execCommand keeps the browser's undo history; setRangeText is the fallback.
  if (!document.execCommand('insertText', false, text)) {
    src.setRangeText(text, src.selectionStart, src.selectionEnd, 'end');
    onInput();
  }
}

function onKey(event) {
  const mod = event.ctrlKey || event.metaKey;
  if (event.key === 'Tab' && !mod && !event.altKey) {
    event.preventDefault();
    insertText('    ');
  } else if (mod && event.key.toLowerCase() === 's') {
    event.preventDefault();
    save();
  } else if (mod && event.key === 'Enter') {
    event.preventDefault();
    run();
  } else if (event.shiftKey && event.altKey && event.code === 'KeyF') {
    event.preventDefault();
    format();
  }
}

// The word under the mouse in the editor: a command's documentation, or
// the problem there.
function onHover(event) {
  const rect = src.getBoundingClientRect();
  const y = event.clientY - rect.top - PAD + src.scrollTop;
  const x = event.clientX - rect.left - PAD + src.scrollLeft;
  const lineNo = Math.floor(y / LINE) + 1;
  const line = src.value.split('\n')[lineNo - 1];
  if (line === undefined || x < 0) return hideTooltip();
  // The character at x, tabs expanded to the next multiple of 4.
  let visual = 0;
  let index = -1;
  for (let i = 0; i < line.length; i++) {
    const width = line[i] === '\t' ? 4 - (visual % 4) : 1;
    if (x < (visual + width) * charWidth) {
      index = i;
      break;
    }
    visual += width;
  }
  if (index < 0) return hideTooltip();
  const word = /[\p{L}\p{N}_]/u;
  let start = index;
  let end = index;
  while (start > 0 && word.test(line[start - 1])) start--;
  while (end < line.length && word.test(line[end])) end++;
  const name = line.slice(start, end);
  const column = [...line.slice(0, index)].length + 1;
  const problem = state.diagnostics.find((d) => d.line === lineNo && d.column <= column && column < d.end_column);
  const command = state.commands.get(name);
  if (problem) showTooltip(tooltipText(`${problem.severity}: ${problem.message}`), event.clientX, event.clientY + 16);
  else if (command) showTooltip(commandDoc(command), event.clientX, event.clientY + 16);
  else hideTooltip();
}

// ---------------------------------------------------------------- tooltip

function tooltipText(text) {
  return el('div', {}, text);
}

function commandDoc(command) {
  const params = command.params.map((p) => el('div', {}, el('code', {}, p.name), el('span', { class: 'kind' }, ` ${p.kind}`)));
  return el(
    'div',
    {},
    el('div', { class: 'sig' }, command.signature),
    command.description ? el('div', {}, command.description) : null,
    params.length ? el('div', {}, ...params) : null,
    command.example ? el('pre', {}, command.example) : null,
    command.origin === 'catalog' ? el('div', { class: 'kind' }, `catalog: ${command.file}`) : null,
  );
}

function showTooltip(content, x, y) {
  const tip = $('tooltip');
  tip.replaceChildren(content);
  tip.hidden = false;
  const width = tip.offsetWidth;
  const height = tip.offsetHeight;
  tip.style.setProperty('left', `${Math.max(4, Math.min(x, window.innerWidth - width - 8))}px`);
  tip.style.setProperty('top', `${Math.max(4, Math.min(y, window.innerHeight - height - 8))}px`);
}

function hideTooltip() {
  $('tooltip').hidden = true;
}

// ---------------------------------------------------------------- scripts

async function loadScripts() {
  const { ok, body } = await api('scripts');
  if (!ok) return;
  state.scripts = body.scripts.map((s) => s.name);
  renderScripts();
}

function renderScripts() {
  const names = new Set(state.scripts);
  if (state.name && !names.has(state.name)) names.add(state.name);
  const items = [...names].sort().map((name) =>
    el(
      'li',
      {
        class: name === state.name ? 'active' : '',
        tabindex: 0,
        dataset: { name },
        onclick: () => openScript(name),
        onkeydown: (e) => e.key === 'Enter' && openScript(name),
      },
      `${name}.avap`,
      state.scripts.includes(name) ? null : el('span', { class: 'muted' }, ' (new)'),
    ),
  );
  $('scripts').replaceChildren(...items);
}

async function openScript(name, { force = false } = {}) {
  if (!force && name !== state.name && isDirty() && !window.confirm(`Discard the changes to ${state.name}.avap?`)) return;
  const { ok, body } = await api(`scripts/${encodeURIComponent(name)}`);
  if (!ok) return flash(body && body.error ? body.error : `cannot open ${name}`, true);
  setBuffer(name, body.source, body.version);
}

function setBuffer(name, source, version) {
  const scroll = name === state.name ? src.scrollTop : 0;
  // Another script: the last run's outcome was not its own.
  if (name !== state.name) {
    $('outcome').hidden = true;
    $('run-state').textContent = '';
  }
  state.name = name;
  state.version = version;
  state.saved = source;
  state.runError = null;
  src.value = source;
  src.scrollTop = scroll;
  $('script-name').textContent = `${name}.avap`;
  $('banner').hidden = true;
  history.replaceState(null, '', `#${name}`);
  renderScripts();
  render();
  check();
}

async function save({ overwrite = false } = {}) {
  if (!state.name) return flash('open or create a script first', true);
  let version = state.version;
  if (overwrite) {
    const current = await api(`scripts/${encodeURIComponent(state.name)}`);
    version = current.ok ? current.body.version : null;
  }
  const text = src.value;
  const { ok, status, body } = await api(`scripts/${encodeURIComponent(state.name)}`, {
    method: 'PUT',
    body: { source: text, version },
  });
  if (ok) {
    state.version = body.version;
    state.saved = text;
    $('banner').hidden = true;
    flash(`saved ${state.name}.avap`);
    render();
  } else if (status === 409) {
    showBanner(`${body.error}.`, 'overwrite');
  } else {
    flash(body && body.error ? body.error : `not saved (${status})`, true);
  }
}

let bannerMode = null;
function showBanner(text, mode) {
  bannerMode = mode;
  $('banner-text').textContent = text;
  $('banner-keep').textContent = mode === 'overwrite' ? 'Overwrite it with my text' : 'Keep my text';
  $('banner').hidden = false;
}

async function format() {
  const { ok, body } = await api('format', { method: 'POST', body: { source: src.value } });
  if (!ok) return flash(body && body.error ? body.error : 'not formatted', true);
  if (!body.changed) return flash('already formatted');
  const { selectionStart } = src;
  src.focus();
  src.select();
  insertText(body.formatted);
  src.setSelectionRange(Math.min(selectionStart, src.value.length), Math.min(selectionStart, src.value.length));
  onInput();
  flash('formatted');
}

function newScript(event) {
  event.preventDefault();
  const name = $('new-name').value.trim();
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(name)) return flash('a name is letters, digits, _ and -', true);
  if (state.scripts.includes(name)) return openScript(name);
  if (isDirty() && !window.confirm(`Discard the changes to ${state.name}.avap?`)) return;
  $('new-form').hidden = true;
  $('new-name').value = '';
  setBuffer(name, '', null);
  src.focus();
}

// -------------------------------------------------------------------- run

function parseObject(text, what) {
  if (!text.trim()) return {};
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`${what} is not JSON: ${e.message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${what} must be a JSON object`);
  return value;
}

function runInput() {
  const params = parseObject($('run-body').value, 'Body');
  for (const line of $('run-params').value.split('\n')) {
    if (!line.trim()) continue;
    const at = line.indexOf('=');
    if (at < 1) throw new Error(`Parameters: "${line}" is not name=value`);
    params[line.slice(0, at).trim()] = line.slice(at + 1);
  }
  const variables = parseObject($('run-vars').value, 'Variables');
  const query = $('run-query').value.trim().replace(/^\?/, '');
  return { params, variables, query: encodeQuery(query) };
}

// Spaces and the like in a typed query string, encoded as a browser would.
function encodeQuery(query) {
  return query
    .split('&')
    .filter(Boolean)
    .map((pair) => pair.split('=').map((part) => encodeURIComponent(decodeSafe(part))).join('='))
    .join('&');
}

function decodeSafe(text) {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    return text;
  }
}

async function run() {
  if (state.run) return;
  let input;
  try {
    input = runInput();
  } catch (e) {
    $('run-input-error').textContent = e.message;
    $('run-input-error').hidden = false;
    return;
  }
  $('run-input-error').hidden = true;
  const id = crypto.randomUUID();
  const started = performance.now();
  state.run = { id, started };
  $('run').disabled = true;
  $('cancel').hidden = false;
  $('outcome').classList.add('stale');
  const runState = $('run-state');
  runState.className = 'run-state running';
  const tick = () => (runState.textContent = `running… ${((performance.now() - started) / 1000).toFixed(1)} s`);
  tick();
  const timer = setInterval(tick, 100);
  let answer;
  try {
    answer = await api('run', { method: 'POST', body: { id, name: state.name, script: src.value, ...input } });
  } catch (e) {
    answer = { ok: false, status: 0, body: { error: `the server did not answer: ${e.message}` } };
  } finally {
    clearInterval(timer);
    state.run = null;
    $('run').disabled = false;
    $('cancel').hidden = true;
    runState.className = 'run-state';
  }
  const { ok, body } = answer;
  if (!ok) {
    runState.textContent = '';
    $('run-input-error').textContent = body && body.error ? body.error : 'the run was refused';
    $('run-input-error').hidden = false;
    return;
  }
  // A cancelled run leaves the last outcome dimmed: it is not this run's.
  if (body.cancelled) {
    runState.textContent = `cancelled after ${(body.elapsed_ms / 1000).toFixed(1)} s`;
    return;
  }
  $('outcome').classList.remove('stale');
  runState.textContent = `done in ${body.elapsed_ms.toFixed(0)} ms`;
  showOutcome(body.status, body.response, body.elapsed_ms);
}

async function cancel() {
  if (!state.run) return;
  await api(`runs/${state.run.id}/cancel`, { method: 'POST' });
}

function showOutcome(status, response, elapsedMs) {
  $('outcome').hidden = false;
  const success = response && response.success === true;
  const kind = response && response.kind;
  $('run-status').replaceChildren(
    el('span', { class: success ? 'code-ok' : 'code-bad' }, `HTTP ${status}`),
    ' ',
    success ? 'success' : kind || 'failed',
  );
  const error = $('run-error');
  const errorLine = response && Number.isInteger(response.line) ? response.line : null;
  if (!success && response && response.error) {
    // The host's message starts with its line: that part goes to the line.
    const prefix = `line ${errorLine}: `;
    const text = errorLine && response.error.startsWith(prefix) ? response.error.slice(prefix.length) : response.error;
    error.replaceChildren(
      errorLine ? el('a', { onclick: () => goTo(errorLine) }, `line ${errorLine}`) : '',
      errorLine ? ': ' : '',
      text,
    );
    error.hidden = false;
  } else {
    error.hidden = true;
  }
  state.runError = !success && errorLine ? { line: errorLine, message: response.error } : null;
  render();

  // A failure's logs are in the table below.
  const { logs: _, ...failure } = response || {};
  $('run-result').textContent = success ? pretty(response.result) : pretty(failure);
  $('run-variables').textContent = success ? pretty(response.variables) : '(the script did not finish)';
  showMeters(response, kind, elapsedMs);
  const logs = (response && Array.isArray(response.logs) ? response.logs : []);
  showLog(logs);
  showChart(logs);
}

// The host reports fuel and time for a run that finished; for one that
// failed, the time is this request's, whole (wall clock), and the fuel is
// not known unless it ran out.
function showMeters(response, kind, elapsedMs) {
  const limits = state.info ? state.info.limits : { fuel: 0, timeout_ms: 0 };
  const usage = (response && response.usage) || {};
  const fuel = kind === 'out_of_fuel' ? limits.fuel : usage.fuel;
  let ms = kind === 'timeout' ? limits.timeout_ms : usage.duration_ms;
  let note = '';
  if (typeof ms !== 'number' && typeof elapsedMs === 'number') {
    ms = elapsedMs;
    note = ' (whole request)';
  }
  meter('fuel', fuel, limits.fuel, (v) => v.toLocaleString('en'), '', 'not reported for a failed run');
  meter('time', ms, limits.timeout_ms, (v) => v.toFixed(v < 10 ? 2 : 0), ' ms', 'not reported', note);
}

function meter(which, used, cap, show, unit, missing, note = '') {
  const bar = $(`${which}-bar`);
  const text = $(`${which}-text`);
  if (typeof used !== 'number' || !cap) {
    bar.style.setProperty('width', '0');
    text.textContent = missing;
    return;
  }
  const share = Math.min(1, used / cap);
  bar.style.setProperty('width', `${Math.max(share * 100, used > 0 ? 0.5 : 0)}%`);
  bar.classList.toggle('full', share >= 1);
  text.textContent = `${show(used)}${unit} of ${show(cap)}${unit} (${(share * 100).toFixed(share < 0.01 ? 3 : 1)}%)${note}`;
}

function showLog(logs) {
  const rows = logs.map((log) => {
    if (log.stream) {
      return el('tr', {}, el('td', {}, log.stream), el('td', { colspan: 3, class: 'stream' }, log.text));
    }
    const failed = log.success === false;
    return el(
      'tr',
      { class: failed ? 'failed' : '' },
      el('td', {}, el('a', { onclick: () => goTo(log.line) }, log.line)),
      el('td', {}, log.command, failed && log.error ? el('div', {}, log.error) : null),
      el('td', {}, failed ? 'failed' : 'ok'),
      el('td', { class: 'ms' }, typeof log.duration_ms === 'number' ? log.duration_ms.toFixed(3) : ''),
    );
  });
  $('run-log').tBodies[0].replaceChildren(...rows);
}

// Milliseconds per line (a line in a loop adds up), the slowest in red.
function showChart(logs) {
  const perLine = new Map();
  for (const log of logs) {
    if (log.stream || typeof log.duration_ms !== 'number') continue;
    const entry = perLine.get(log.line) || { line: log.line, command: log.command, ms: 0, count: 0 };
    entry.ms += log.duration_ms;
    entry.count += 1;
    perLine.set(log.line, entry);
  }
  let entries = [...perLine.values()];
  if (entries.length > 40) entries = entries.sort((a, b) => b.ms - a.ms).slice(0, 40);
  entries.sort((a, b) => a.line - b.line);
  const max = Math.max(0, ...entries.map((e) => e.ms));
  const rows = entries.map((e) => {
    const fill = el('div', { class: 'bar-fill' });
    fill.style.setProperty('width', `${max > 0 ? (e.ms / max) * 100 : 0}%`);
    const label = `${e.line} ${e.command}${e.count > 1 ? ` ×${e.count}` : ''}`;
    return el(
      'div',
      { class: `bar-row${e.ms === max && max > 0 ? ' slowest' : ''}`, title: `line ${e.line}: ${e.ms.toFixed(3)} ms`, onclick: () => goTo(e.line) },
      el('span', { class: 'bar-label' }, label),
      el('div', { class: 'bar-track' }, fill),
      el('span', { class: 'bar-value' }, `${e.ms.toFixed(3)} ms`),
    );
  });
  $('chart').replaceChildren(...(rows.length ? rows : [el('span', { class: 'muted' }, 'no command was logged')]));
}

// -------------------------------------------------------------- endpoints

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

function resolveRef(doc, node) {
  let value = node;
  for (let depth = 0; value && value.$ref && depth < 16; depth++) {
    if (!value.$ref.startsWith('#/')) return {};
    value = value.$ref
      .slice(2)
      .split('/')
      .reduce((at, key) => (at ? at[key.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined), doc);
  }
  return value || {};
}

async function loadEndpoints() {
  const { ok, body } = await api('/openapi.json');
  if (!ok || !body || typeof body.paths !== 'object') return;
  const operations = [];
  for (const [path, item] of Object.entries(body.paths)) {
    const shared = (item.parameters || []).map((p) => resolveRef(body, p));
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const parameters = shared.concat((op.parameters || []).map((p) => resolveRef(body, p)));
      const requestBody = op.requestBody ? resolveRef(body, op.requestBody) : null;
      operations.push({ method: method.toUpperCase(), path, op, parameters, requestBody });
    }
  }
  state.operations = operations;
  renderEndpoints();
}

const opId = (o) => `op-${o.method}-${o.path}`.replace(/[^A-Za-z0-9_-]/g, '_');

function renderEndpoints() {
  $('endpoint-list').replaceChildren(
    ...state.operations.map((o) =>
      el(
        'li',
        { tabindex: 0, title: o.op.summary || '', onclick: () => showEndpoint(o), onkeydown: (e) => e.key === 'Enter' && showEndpoint(o) },
        el('span', { class: 'method' }, o.method),
        o.path,
      ),
    ),
  );
  // Keep what was typed in forms that stay.
  const typed = new Map();
  for (const input of $('endpoints').querySelectorAll('input, textarea')) typed.set(input.id, input.value);
  $('endpoints').replaceChildren(...state.operations.map(endpointCard));
  for (const [id, value] of typed) {
    const input = document.getElementById(id);
    if (input) input.value = value;
  }
  if (!state.operations.length) $('endpoints').append(el('p', { class: 'muted' }, '/openapi.json lists no operation.'));
}

function endpointCard(o) {
  const id = opId(o);
  const rows = o.parameters.map((p) => {
    const input = el('input', {
      id: `${id}-p-${p.in}-${p.name}`,
      'aria-label': `${p.name} (${p.in})`,
      placeholder: p.schema && p.schema.type ? p.schema.type : '',
      required: p.required ? '' : null,
      dataset: { name: p.name, in: p.in },
    });
    return el(
      'tr',
      {},
      el('td', { class: 'pname' }, p.name, p.required ? ' *' : ''),
      el('td', { class: 'muted' }, p.in),
      el('td', {}, input, p.description ? el('div', { class: 'muted' }, p.description) : null),
    );
  });
  const canHaveBody = !['GET', 'HEAD'].includes(o.method);
  const bodyInput =
    o.requestBody && canHaveBody
      ? el('textarea', { id: `${id}-body`, rows: 3, spellcheck: 'false', 'aria-label': 'Request body (JSON)', placeholder: '{}' })
      : null;
  const response = el('div', { class: 'response', 'aria-live': 'polite' });
  const script = o.op['x-avap-script'];
  const send = el('button', { class: 'primary', onclick: () => sendRequest(o, card, response) }, 'Send');
  const card = el(
    'article',
    { class: 'endpoint', id },
    el(
      'header',
      {},
      el('span', { class: 'method' }, o.method),
      el('span', { class: 'path' }, o.path),
      el('span', { class: 'muted' }, o.op.summary || ''),
    ),
    el(
      'div',
      { class: 'body' },
      o.op.description ? el('p', {}, o.op.description) : null,
      rows.length ? el('table', {}, el('tbody', {}, rows)) : el('p', { class: 'muted' }, 'No parameters listed.'),
      bodyInput ? el('label', {}, 'Body (application/json)', bodyInput) : null,
      el(
        'div',
        { class: 'row' },
        send,
        script ? el('button', { onclick: () => openFromEndpoint(script) }, `Edit ${script}`) : null,
      ),
      response,
    ),
  );
  return card;
}

function openFromEndpoint(file) {
  selectTab('editor');
  openScript(file.replace(/\.avap$/, ''));
}

function showEndpoint(o) {
  selectTab('endpoints');
  const card = document.getElementById(opId(o));
  if (!card) return;
  card.scrollIntoView({ block: 'start' });
  const first = card.querySelector('input, textarea, button');
  if (first) first.focus();
}

async function sendRequest(o, card, out) {
  let path = o.path;
  const query = new URLSearchParams();
  const headers = {};
  for (const input of card.querySelectorAll('input[data-in]')) {
    const { name, in: where } = input.dataset;
    const value = input.value;
    if (where === 'path') path = path.replace(`{${name}}`, encodeURIComponent(value));
    else if (value === '') continue;
    else if (where === 'query') query.append(name, value);
    else if (where === 'header') headers[name] = value;
  }
  const options = { method: o.method, headers };
  const bodyInput = card.querySelector('textarea');
  if (bodyInput && bodyInput.value.trim()) {
    headers['content-type'] = 'application/json';
    options.body = bodyInput.value;
  }
  const url = path + (query.toString() ? `?${query}` : '');
  out.replaceChildren(el('span', { class: 'run-state running' }, `${o.method} ${url}`));
  const started = performance.now();
  try {
    const response = await fetch(url, options);
    const text = await response.text();
    const ms = performance.now() - started;
    let shown = text;
    try {
      shown = pretty(JSON.parse(text));
    } catch {
      // not JSON: shown as it is
    }
    const headerLines = [...response.headers].map(([k, v]) => `${k}: ${v}`).join('\n');
    out.replaceChildren(
      el(
        'div',
        { class: 'status-line' },
        el('span', { class: response.ok ? 'code-ok' : 'code-bad' }, `${response.status} ${response.statusText}`),
        ` ${o.method} ${url} · ${ms.toFixed(0)} ms`,
      ),
      el('div', { class: 'headers' }, headerLines),
      el('pre', { class: 'json' }, shown),
    );
  } catch (e) {
    out.replaceChildren(el('p', { class: 'error-text' }, `no answer: ${e.message}`));
  }
}

// --------------------------------------------------------------- commands

async function loadCommands() {
  const { ok, body } = await api('commands');
  if (!ok) return;
  state.commands = new Map(body.commands.map((c) => [c.name, c]));
  renderCommands();
}

function renderCommands() {
  const filter = $('command-filter').value.trim().toLowerCase();
  const list = [...state.commands.values()]
    .filter((c) => !filter || c.name.toLowerCase().includes(filter))
    .sort((a, b) => (a.origin === b.origin ? a.name.localeCompare(b.name) : a.origin === 'catalog' ? -1 : 1));
  $('commands').replaceChildren(
    ...list.map((c) => {
      const show = (event) => {
        const rect = event.currentTarget.getBoundingClientRect();
        showTooltip(commandDoc(c), rect.right + 8, rect.top);
      };
      return el(
        'li',
        {
          tabindex: 0,
          dataset: { command: c.name },
          onmouseenter: show,
          onfocus: show,
          onmouseleave: hideTooltip,
          onblur: hideTooltip,
          onclick: () => {
            src.focus();
            insertText(`${c.name}(${c.params.map((p) => p.name).join(', ')})`);
          },
        },
        c.name,
        c.origin === 'catalog' ? el('span', { class: 'origin' }, 'catalog') : null,
      );
    }),
  );
}

// ------------------------------------------------------------------- live

function connect() {
  const live = $('live');
  const events = new EventSource(`${API}/events`);
  events.addEventListener('hello', () => {
    live.textContent = 'live';
    live.className = 'live on';
  });
  events.addEventListener('error', () => {
    live.textContent = 'reconnecting…';
    live.className = 'live off';
  });
  events.addEventListener('changed', (e) => onChanged(JSON.parse(e.data)));
  events.addEventListener('removed', (e) => onRemoved(JSON.parse(e.data)));
  events.addEventListener('commands', async () => {
    await loadCommands();
    check();
  });
  events.addEventListener('resync', () => {
    loadScripts();
    loadEndpoints();
    loadCommands();
  });
}

async function onChanged({ name, version }) {
  await loadScripts();
  loadEndpoints();
  if (name !== state.name || version === state.version) return;
  if (!isDirty()) {
    await openScript(name, { force: true });
    flash(`${name}.avap changed on disk: reloaded`);
  } else {
    showBanner(`${name}.avap changed on disk while you edit it.`, 'choose');
  }
}

async function onRemoved({ name }) {
  await loadScripts();
  loadEndpoints();
  if (name === state.name) {
    state.version = null;
    showBanner(`${name}.avap was deleted on disk. Saving writes it again.`, 'choose');
  }
}

// ------------------------------------------------------------------- tabs

function selectTab(which) {
  const editor = which === 'editor';
  $('tab-editor').setAttribute('aria-selected', String(editor));
  $('tab-endpoints').setAttribute('aria-selected', String(!editor));
  $('editor-view').hidden = !editor;
  $('endpoints-view').hidden = editor;
}

// ------------------------------------------------------------------ start

async function loadInfo() {
  const { ok, body } = await api('info');
  if (!ok) return;
  state.info = body;
  $('folder').textContent = body.dir;
  $('caps').textContent = `fuel ${body.limits.fuel.toLocaleString('en')} · ${body.limits.timeout_ms} ms · ${body.limits.max_memory_mb} MiB`;
  const grants = [];
  if (body.grants.db) grants.push(`db (${body.grants.db})`);
  if (body.grants.http) grants.push(body.grants.http_allow.length ? `http (+ ${body.grants.http_allow.join(', ')})` : 'http');
  if (body.catalog) grants.push(`catalog ${body.catalog}`);
  $('grants').textContent = grants.length ? `granted: ${grants.join(', ')}` : 'no capability granted';
}

async function loadGrammar() {
  const response = await fetch(`${API}/assets/avap.tmLanguage.json`);
  state.grammar = compileGrammar(await response.json());
  if (state.grammar.problems.length) console.warn('grammar:', state.grammar.problems);
}

async function start() {
  src.addEventListener('input', onInput);
  src.addEventListener('scroll', syncScroll);
  src.addEventListener('keydown', onKey);
  src.addEventListener('mousemove', onHover);
  src.addEventListener('mouseleave', hideTooltip);
  $('save').addEventListener('click', () => save());
  $('format').addEventListener('click', format);
  $('run').addEventListener('click', run);
  $('cancel').addEventListener('click', cancel);
  $('new-script').addEventListener('click', () => {
    $('new-form').hidden = !$('new-form').hidden;
    $('new-name').focus();
  });
  $('new-form').addEventListener('submit', newScript);
  $('command-filter').addEventListener('input', renderCommands);
  $('tab-editor').addEventListener('click', () => selectTab('editor'));
  $('tab-endpoints').addEventListener('click', () => selectTab('endpoints'));
  $('banner-reload').addEventListener('click', () => openScript(state.name, { force: true }));
  $('banner-keep').addEventListener('click', () => {
    if (bannerMode === 'overwrite') save({ overwrite: true });
    else $('banner').hidden = true;
  });
  window.addEventListener('beforeunload', (e) => {
    if (isDirty()) e.preventDefault();
  });
  measure();
  connect();
  await Promise.all([loadInfo(), loadGrammar(), loadCommands(), loadScripts(), loadEndpoints()]);
  const wanted = decodeURIComponent(location.hash.slice(1));
  const first = state.scripts.includes(wanted) ? wanted : state.scripts[0];
  if (first) await openScript(first, { force: true });
  else render();
  document.body.dataset.ready = 'true';
}

start();
