// The console's highlighter (cli/console/highlight.js) against VS Code's own
// TextMate engine (vscode-textmate on the Oniguruma wasm): on every line of
// every .avap file of the repository, and on lines written to reach each
// rule, both give every character the same scopes. So the page colours AVAP
// exactly as the editors do, from the same grammar. Run by run.sh.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { compileGrammar, tokenizeLine, classOf } from '../highlight.js';

const require = createRequire(import.meta.url);
const vsctm = require('vscode-textmate');
const oniguruma = require('vscode-oniguruma');

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..', '..');
const grammarPath = join(repo, 'editors', 'vscode', 'syntaxes', 'avap.tmLanguage.json');
const raw = JSON.parse(readFileSync(grammarPath, 'utf8'));

let reference;

before(async () => {
  const wasm = readFileSync(require.resolve('vscode-oniguruma/release/onig.wasm'));
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scopeName) =>
      scopeName === 'source.avap' ? vsctm.parseRawGrammar(readFileSync(grammarPath, 'utf8'), grammarPath) : null,
  });
  reference = await registry.loadGrammar('source.avap');
  assert.ok(reference, 'the grammar loads in vscode-textmate');
});

// Per UTF-16 unit of `line`, its scopes joined (the grammar's own scope left out).
function perChar(tokens, line, startOf, endOf, scopesOf) {
  const out = new Array(line.length).fill('');
  for (const t of tokens) {
    for (let i = startOf(t); i < Math.min(endOf(t), line.length); i++) out[i] = scopesOf(t).join(' ');
  }
  return out;
}

function theirs(line) {
  const { tokens } = reference.tokenizeLine(line, vsctm.INITIAL);
  return perChar(tokens, line, (t) => t.startIndex, (t) => t.endIndex, (t) => t.scopes.slice(1));
}

function ours(grammar, line) {
  return perChar(tokenizeLine(grammar, line), line, (t) => t.start, (t) => t.end, (t) => t.scopes);
}

function avapFiles(dir, out = []) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'target' || name.startsWith('.')) continue;
    const path = join(dir, name);
    const st = statSync(path);
    if (st.isDirectory()) avapFiles(path, out);
    else if (name.endsWith('.avap')) out.push(path);
  }
  return out;
}

// Lines that reach the rules the repository's scripts may not.
const WRITTEN = [
  'addVar(a, 1) // note',
  'n = getListLen(xs) // count',
  'x = a // 2',
  'x = a //',
  'r = fact(10) // 3628800',
  'function add(a, b) { return a + b }',
  'msg = `Hello ${who}, ${n * 2} times` // greet',
  "s = 'it\\'s' + \"a \\\"q\\\"\" + `t\\n`",
  'if(x, None, "!=")',
  'ok = True and not False or x >= 1.5e3',
  '_status = 404',
  'addResult(__last_error__)',
  'd = {"a": [1, 2, {"b": null}], \'c\': xs[0]}',
  '    }',
  'startLoop(i, 0, 10); addVar(s, s + i); endLoop()',
  'x = y ** 2 % 3 // 1',
  'ñame = "ü" + str(len([1]))',
  'unterminated = "abc',
  '',
  '   // indented comment',
  'while(n < 3)',
  'try()',
  'e = exception(err)',
];

test('the grammar compiles to JavaScript regular expressions as written', () => {
  const grammar = compileGrammar(raw);
  assert.deepEqual(grammar.problems, []);
  assert.ok(grammar.root.length > 5, 'the root has its rules');
});

test('every line gets the scopes VS Code gives it', () => {
  const grammar = compileGrammar(raw);
  const lines = new Set(WRITTEN);
  const files = avapFiles(repo);
  assert.ok(files.length > 20, `the repository's scripts are found (${files.length})`);
  for (const file of files) for (const line of readFileSync(file, 'utf8').split('\n')) lines.add(line);
  let checked = 0;
  for (const line of lines) {
    const a = ours(grammar, line);
    const b = theirs(line);
    for (let i = 0; i < line.length; i++) {
      if (a[i] !== b[i]) {
        assert.fail(`${JSON.stringify(line)} at ${i} (${JSON.stringify(line.slice(i, i + 8))}):\n  ours:   ${a[i]}\n  vscode: ${b[i]}`);
      }
    }
    checked++;
  }
  assert.ok(checked > 200, `lines checked: ${checked}`);
});

test('tokens cover the line and get the colours the page uses', () => {
  const grammar = compileGrammar(raw);
  const line = 'x = addVar(a, "s") // c';
  const tokens = tokenizeLine(grammar, line);
  assert.equal(tokens.map((t) => line.slice(t.start, t.end)).join(''), line);
  const cls = (needle) => classOf(tokens.find((t) => t.start <= line.indexOf(needle) && line.indexOf(needle) < t.end).scopes);
  assert.equal(cls('addVar'), 'tok-command');
  assert.equal(cls('"s"'), 'tok-string');
  assert.equal(cls('// c'), 'tok-comment');
  assert.equal(cls('x'), 'tok-target');
});
