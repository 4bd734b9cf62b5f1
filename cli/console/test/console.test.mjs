// The console of `avap dev`, used as a person uses it: headless Chromium
// (Debian's, /usr/bin/chromium), driven by playwright-core, against a real
// `avap dev` on a folder of scripts. A screenshot of each step goes to
// $SCREENSHOTS (default target/console-screenshots/). Run by run.sh (CI step
// "console in a browser").
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..', '..');
const BIN = process.env.AVAP_BIN || join(repo, 'target', 'debug', 'avap');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.SCREENSHOTS || join(repo, 'target', 'console-screenshots');

const folder = mkdtempSync(join(tmpdir(), 'avap-console-'));
const scripts = join(folder, 'scripts');
const catalog = join(folder, 'catalog');

let dev;
let devOutput = '';
let base;
let slow;
let otherSite;
let browser;
let page;
const pageErrors = [];
let shot = 0;

async function screenshot(name) {
  shot += 1;
  const file = join(SHOTS, `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

/** Resolves with a server listening on a free loopback port. */
function listen(server) {
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server.address().port)));
}

function startDev(port, httpAllow) {
  return new Promise((ok, fail) => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('AVAP_') && k !== 'API_KEY'));
    dev = spawn(
      BIN,
      ['dev', scripts, '--port', String(port), '--catalog', catalog, '--http-allow', httpAllow, '--timeout-ms', '60000'],
      { env: { ...env, AVAP_LOG_FORMAT: 'text' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const timer = setTimeout(() => fail(new Error(`avap dev did not start:\n${devOutput}`)), 90_000);
    const read = (chunk) => {
      devOutput += chunk;
      if (devOutput.includes('console: open http://')) {
        clearTimeout(timer);
        ok();
      }
    };
    dev.stdout.on('data', read);
    dev.stderr.on('data', read);
    dev.on('exit', (code) => fail(new Error(`avap dev exited (${code}):\n${devOutput}`)));
  });
}

async function freePort() {
  const server = createServer();
  const port = await listen(server);
  await new Promise((ok) => server.close(ok));
  return port;
}

/** Waits until `selector`'s text contains `text`. */
async function waitForText(selector, text, timeout = 15_000) {
  try {
    await page.waitForFunction(
      ([s, t]) => {
        const node = document.querySelector(s);
        return node && (node.value !== undefined && node.tagName === 'TEXTAREA' ? node.value : node.textContent).includes(t);
      },
      [selector, text],
      { timeout },
    );
  } catch (e) {
    const actual = await page.evaluate((s) => {
      const n = document.querySelector(s);
      return n ? n.textContent : '(no such element)';
    }, selector);
    throw new Error(`${selector} never contained ${JSON.stringify(text)}; it holds ${JSON.stringify(actual)}\n${e.message}`);
  }
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  mkdirSync(scripts, { recursive: true });
  mkdirSync(catalog, { recursive: true });
  writeFileSync(join(scripts, 'hello.avap'), '// Greets someone.\naddParam(name, who)\nmsg = `Hello ${who}`\naddResult(msg)\n');
  writeFileSync(join(catalog, 'greet.avap'), '// Says hello to someone.\nfunction greet(who) {\n    return `hi ${who}`\n}\n');
  // A slow API a script waits on: it answers after 30 s.
  slow = createServer((req, res) => {
    const timer = setTimeout(() => res.end('{}'), 30_000);
    res.on('close', () => clearTimeout(timer));
  });
  const slowPort = await listen(slow);
  // A page of another site, on another port of this machine.
  otherSite = createServer((req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(otherSitePage(req.url.slice(1)));
  });
  await listen(otherSite);
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  await startDev(port, `127.0.0.1:${slowPort}`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
  });
  page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => m.type() === 'error' && !m.text().includes('status of 40') && pageErrors.push(m.text()));
});

after(async () => {
  if (browser) await browser.close();
  if (dev) dev.kill();
  slow?.closeAllConnections?.();
  slow?.close();
  otherSite?.close();
  rmSync(folder, { recursive: true, force: true });
});

// Another site's page: it tries to write a script through the console's
// API, run one, and show the console in a frame.
function otherSitePage(target) {
  return `<!doctype html><title>another site</title><h1>another site</h1>
<form id="f" method="POST" action="${target}/api/console/run" enctype="text/plain">
<input name='{"script":"addResult(a)","x":"' value='"}'></form>
<iframe id="frame" src="${target}/" width="600" height="300"></iframe>
<script>
const planted = JSON.stringify({source: "addResult(a)\\n", version: null});
Promise.allSettled([
  // A write: the browser asks first (a CORS preflight), which is refused.
  fetch("${target}/api/console/scripts/planted", {method: "PUT", headers: {"content-type": "application/json"}, body: planted}),
  // What needs no preflight: a "simple" POST, its answer unreadable to this page.
  fetch("${target}/api/console/format", {method: "POST", mode: "no-cors", headers: {"content-type": "text/plain"}, body: planted}),
]).then(() => { document.body.dataset.sent = "yes"; });
</script>`;
}

test('the console, step by step', async (t) => {
  await t.test('opens with the folder and its first script', async () => {
    await page.goto(`${base}/`);
    await page.waitForSelector('body[data-ready="true"]');
    await waitForText('#live', 'live');
    await waitForText('#scripts', 'hello.avap');
    assert.equal(await page.inputValue('#source'), readFileSync(join(scripts, 'hello.avap'), 'utf8'));
    // Highlighted by the editors' grammar: addParam is a command, the template a string.
    assert.equal(await page.locator('#highlight .tok-command').first().textContent(), 'addParam');
    assert.ok((await page.locator('#highlight .tok-string').allTextContents()).some((s) => s.startsWith('`Hello')));
    await waitForText('#check-status', 'no problems');
    await screenshot('opened');
  });

  await t.test('shows a diagnostic at its line and column as a script is typed', async () => {
    await page.click('#new-script');
    await page.fill('#new-name', 'welcome');
    await page.press('#new-name', 'Enter');
    await waitForText('#script-name', 'welcome.avap');
    await page.click('#source');
    await page.keyboard.type('addParam(name, who)\nif(who, "", "==")\naddVar(who, "stranger")\nmsg = `Welcome ${who}`\naddResult(msg)\n');
    await waitForText('#diagnostics', '2:1 error: if() at line 2 is not closed with end()');
    await waitForText('#check-status', '1 error');
    assert.equal(await page.getAttribute('#gutter > div:nth-child(2)', 'class'), 'has-error');
    assert.equal(await page.locator('#marks .mark-error').first().textContent(), 'if');
    await screenshot('diagnostic');
  });

  await t.test('shows a command\'s documentation on hover, the catalog\'s too', async () => {
    // Over a name in the editor: its documentation; over a problem: the problem.
    const at = async (selector, text) => {
      const box = await page.locator(selector, { hasText: text }).first().boundingBox();
      await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    };
    await at('#highlight .tok-command', 'addVar');
    await waitForText('#tooltip', 'addVar(targetVarName, varValue)');
    await at('#marks .mark-error', 'if');
    await waitForText('#tooltip', 'error: if() at line 2 is not closed with end()');
    await page.hover('#commands li[data-command="greet"]');
    await waitForText('#tooltip', 'Says hello to someone.');
    assert.ok((await page.textContent('#tooltip')).includes('greet(who)'));
    await page.hover('#commands li[data-command="addVar"]');
    await waitForText('#tooltip', 'addVar(targetVarName, varValue)');
    await screenshot('command-help');
    await page.mouse.move(0, 0);
  });

  await t.test('is fixed and formatted', async () => {
    await page.click('#source');
    await page.keyboard.press('Control+Home');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('End');
    await page.keyboard.type('\nend()');
    await waitForText('#check-status', 'no problems');
    assert.equal(await page.locator('#diagnostics li').count(), 0);
    await page.click('#format');
    await waitForText('#source', '    addVar(who, "stranger")');
    await screenshot('fixed-and-formatted');
  });

  await t.test('runs with a parameter and shows result, log, timings and usage', async () => {
    await page.fill('#run-params', 'name=Ann');
    await page.click('#run');
    await waitForText('#run-status', 'HTTP 200');
    await waitForText('#run-result', '"msg": "Welcome Ann"');
    await waitForText('#run-variables', '"who": "Ann"');
    const logLines = await page.locator('#run-log tbody tr td:first-child').allTextContents();
    assert.deepEqual(logLines, ['1', '2', '6']);
    assert.equal(await page.locator('#chart .bar-row').count(), 3);
    assert.equal(await page.locator('#chart .slowest').count(), 1);
    await waitForText('#fuel-text', ' of 2,000,000,000');
    await waitForText('#time-text', ' of 60000 ms');
    await screenshot('run');
  });

  await t.test('marks a run\'s error at its line', async () => {
    await page.fill('#run-params', '');
    await page.click('#source');
    await page.keyboard.press('Control+End');
    await page.keyboard.type('n = 1 / 0\n');
    await page.click('#run');
    await waitForText('#run-status', 'runtime_error');
    await waitForText('#run-error', 'line 7');
    assert.equal(await page.getAttribute('#gutter > div:nth-child(7)', 'class'), 'has-run-error');
    await waitForText('#diagnostics', '7: run:');
    await screenshot('run-error');
    // Undone and saved: the file is written.
    await page.click('#source');
    await page.keyboard.press('Control+End');
    await page.keyboard.press('Shift+ArrowUp');
    await page.keyboard.press('Backspace');
    await page.keyboard.press('Control+S');
    await waitForText('#flash', 'saved welcome.avap');
    assert.match(readFileSync(join(scripts, 'welcome.avap'), 'utf8'), /^addParam\(name, who\)\nif\(who, "", "=="\)\n {4}addVar/);
    await waitForText('#scripts', 'welcome.avap');
  });

  await t.test('calls an endpoint through its form', async () => {
    await waitForText('#endpoint-list', '/welcome');
    await page.click('#tab-endpoints');
    const card = page.locator('article.endpoint', { has: page.locator('.path', { hasText: /^\/welcome$/ }) });
    await card.locator('input[data-name="name"]').fill('Bo');
    await card.locator('button', { hasText: 'Send' }).click();
    await card.locator('.response .status-line').waitFor();
    const status = await card.locator('.response .status-line').textContent();
    assert.match(status, /^200 OK POST \/welcome\?name=Bo/);
    assert.match(await card.locator('.response .headers').textContent(), /content-type: application\/json/);
    assert.match(await card.locator('.response pre').textContent(), /"msg": "Welcome Bo"/);
    await card.scrollIntoViewIfNeeded();
    await screenshot('endpoint');
    await page.click('#tab-editor');
  });

  await t.test('shows a long run running, and cancels it', async () => {
    const slowPort = slow.address().port;
    writeFileSync(join(scripts, 'slow.avap'), `RequestGet("http://127.0.0.1:${slowPort}/", , , data)\naddResult(data)\n`);
    await waitForText('#scripts', 'slow.avap');
    await page.click('#scripts li[data-name="slow"]');
    await waitForText('#script-name', 'slow.avap');
    await page.click('#run');
    await waitForText('#run-state', 'running…');
    await page.waitForTimeout(1200);
    assert.ok(await page.isVisible('#cancel'));
    await screenshot('running');
    await page.click('#cancel');
    await waitForText('#run-state', 'cancelled after');
    assert.ok(!(await page.isVisible('#cancel')));
    assert.ok(devOutput.includes('console run slow: cancelled'), devOutput);
    await screenshot('cancelled');
  });

  await t.test('follows a file saved in another editor', async () => {
    await page.click('#scripts li[data-name="hello"]');
    await waitForText('#script-name', 'hello.avap');
    const text = '// Greets someone, loudly.\naddParam(name, who)\nmsg = `HELLO ${who}`\naddResult(msg)\n';
    writeFileSync(join(scripts, 'hello.avap'), text);
    await page.waitForFunction((t) => document.getElementById('source').value === t, text, { timeout: 15_000 });
    await waitForText('#flash', 'changed on disk: reloaded');
    writeFileSync(join(scripts, 'added.avap'), 'addResult(x)\n');
    await waitForText('#scripts', 'added.avap');
    await waitForText('#endpoint-list', '/added');
    await screenshot('live-update');
  });

  await t.test('another site\'s page can neither use the console nor frame it', async () => {
    const other = await browser.newPage({ viewport: { width: 900, height: 500 } });
    const otherBase = `http://localhost:${otherSite.address().port}`;
    await other.goto(`${otherBase}/${base}`);
    await other.waitForSelector('body[data-sent="yes"]');
    await other.waitForTimeout(1000);
    // The frame holds no console: the browser was refused it.
    const frame = other.frames().find((f) => f !== other.mainFrame());
    assert.ok(frame, 'the frame is there');
    assert.equal(await frame.$('#source').catch(() => null), null, 'the console is not shown inside another site\'s page');
    assert.ok(!existsSync(join(scripts, 'planted.avap')), 'the cross-site write was refused');
    assert.match(devOutput, /refused (OPTIONS|PUT) \/api\/console\/scripts\/planted: cross_origin/);
    assert.match(devOutput, /refused POST \/api\/console\/format: cross_origin/);
    assert.match(devOutput, /refused GET \/: cross_origin/);
    const main = page;
    page = other;
    await screenshot('other-site-refused');
    // A form posted to the run API from that page: refused too.
    await Promise.all([other.waitForNavigation(), other.evaluate(() => document.getElementById('f').submit())]);
    assert.match(await other.textContent('body'), /cross_origin/);
    assert.match(devOutput, /refused POST \/api\/console\/run: cross_origin/);
    await screenshot('other-site-form-refused');
    await other.close();
    page = main;
  });

  assert.deepEqual(pageErrors, [], 'the page logged no error');
});
