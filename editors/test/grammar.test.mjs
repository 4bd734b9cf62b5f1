// Tests of editors/vscode: the TextMate grammar, tokenized by vscode-textmate
// on the Oniguruma wasm (the engine VS Code itself uses), and the extension's
// manifest. Run by editors/test/run.sh (CI step "editor grammar").
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, existsSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

const require = createRequire(import.meta.url);
const vsctm = require('vscode-textmate');
const oniguruma = require('vscode-oniguruma');

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');
const extDir = join(repo, 'editors', 'vscode');
const manifest = JSON.parse(readFileSync(join(extDir, 'package.json'), 'utf8'));
const grammarPath = join(extDir, manifest.contributes.grammars[0].path);
const rawGrammar = JSON.parse(readFileSync(grammarPath, 'utf8'));

let grammar;
// The state between two lines when nothing is left open (the root rule).
let lineStart;

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
  grammar = await registry.loadGrammar('source.avap');
  assert.ok(grammar, 'the grammar loads');
  lineStart = grammar.tokenizeLine('', vsctm.INITIAL).ruleStack;
});

// Tokenizes one line on its own (AVAP has no construct that spans lines).
function tokenize(line) {
  return grammar.tokenizeLine(line, vsctm.INITIAL).tokens.map((t) => ({
    text: line.slice(t.startIndex, t.endIndex),
    start: t.startIndex,
    end: t.endIndex,
    scopes: t.scopes,
  }));
}

// `scope` names the scope or a parent of it: `keyword.operator` covers
// `keyword.operator.arithmetic.avap`.
const has = (scopes, scope) => scopes.some((s) => s === scope || s.startsWith(scope + '.'));

// The tokens covering the `nth` occurrence of `needle` in `line`.
function tokensOf(line, needle, nth = 0) {
  let at = -1;
  for (let i = 0; i <= nth; i++) {
    at = line.indexOf(needle, at + 1);
    assert.notEqual(at, -1, `${JSON.stringify(needle)} (occurrence ${nth}) is not in ${JSON.stringify(line)}`);
  }
  const toks = tokenize(line).filter((t) => t.start < at + needle.length && t.end > at);
  return { at, toks };
}

function describe(line) {
  return tokenize(line)
    .map((t) => `  ${JSON.stringify(t.text)}: ${t.scopes.slice(1).join(' ')}`)
    .join('\n');
}

// Every character of `needle` has `scope`.
function assertScope(line, needle, scope, nth = 0) {
  const { toks } = tokensOf(line, needle, nth);
  for (const t of toks) {
    assert.ok(has(t.scopes, scope), `${JSON.stringify(needle)} in ${JSON.stringify(line)} should be ${scope}; tokens:\n${describe(line)}`);
  }
}

// No character of `needle` has `scope`.
function assertNotScope(line, needle, scope, nth = 0) {
  const { toks } = tokensOf(line, needle, nth);
  for (const t of toks) {
    assert.ok(!has(t.scopes, scope), `${JSON.stringify(needle)} in ${JSON.stringify(line)} should not be ${scope}; tokens:\n${describe(line)}`);
  }
}

// The 27 commands of the interpreter's table, with their group.
function interpreterCommands() {
  const src = readFileSync(join(repo, 'guest-vm', 'src', 'builtins.rs'), 'utf8');
  const table = src.slice(src.indexOf('static TABLE'));
  const rows = [...table.matchAll(/\b(command|control)\(\s*B::\w+\s*,\s*"([^"]+)"/g)].map((m) => ({ group: m[1], name: m[2] }));
  const declared = Number(/static TABLE: \[CommandSpec; (\d+)\]/.exec(src)?.[1]);
  assert.equal(rows.length, declared, 'every row of the table in guest-vm/src/builtins.rs was read');
  return rows;
}

test('standard commands are builtins when followed by (', () => {
  assertScope('addVar(a, 1)', 'addVar', 'support.function.builtin.avap');
  assertScope('    ormDirect(`SELECT 1`, r)', 'ormDirect', 'support.function.builtin.avap');
  assertScope('RequestGet(url, "", "", data)', 'RequestGet', 'support.function.builtin.avap');
  assertScope('AddvariableToJSON ("user", name, doc)', 'AddvariableToJSON', 'support.function.builtin.avap');
  // Nested in an argument, too.
  assertScope('addVar(copy, getListLen(xs))', 'getListLen', 'support.function.builtin.avap');
  // Names are case-sensitive, and a name is a command only before `(`.
  assertScope('addvar(a, 1)', 'addvar', 'entity.name.function.call.avap');
  assertNotScope('addvar(a, 1)', 'addvar', 'support.function.builtin');
  assertScope('replace = 3', 'replace', 'variable.other.assignment.avap');
  assertScope('x = replaceAll(s)', 'replaceAll', 'entity.name.function.call.avap');
});

test('control-flow commands are keyword.control', () => {
  for (const line of ['if(rol, "admin", "==")', 'else()', 'end()', 'startLoop(i, 1, 10)', 'endLoop()', 'try()', 'exception(err)']) {
    assertScope(line, line.slice(0, line.indexOf('(')), 'keyword.control.avap');
  }
  assertScope('    if(x, 10, <)', 'if', 'keyword.control.avap');
  assertScope('e2 = exception(err)', 'exception', 'keyword.control.avap');
  assertScope('e2 = exception(err)', 'e2', 'variable.other.assignment.avap');
  // The comparator of if() and its sides.
  assertScope('if(l0, 5.0, =)', '=', 'keyword.operator.comparison');
  assertScope('if(l0, 5.0, =)', '5.0', 'constant.numeric.float.avap');
});

test('every command of the interpreter is highlighted as a builtin or a control keyword', () => {
  const rows = interpreterCommands();
  assert.equal(rows.length, 27);
  for (const { group, name } of rows) {
    const line = `${name}(x)`;
    const scope = group === 'control' ? 'keyword.control.avap' : 'support.function.builtin.avap';
    assertScope(line, name, scope);
    // The same in an argument and in the target form.
    assertScope(`addVar(y, ${name}(x))`, name, scope);
    assertScope(`y = ${name}(x)`, name, scope);
  }
  // docs/COMMANDS.md lists the same 27 names.
  const doc = readFileSync(join(repo, 'docs', 'COMMANDS.md'), 'utf8');
  const documented = [...doc.matchAll(/^\| \[`(\w+)`\]\(#/gm)].map((m) => m[1]);
  assert.deepEqual([...documented].sort(), rows.map((r) => r.name).sort());
});

test('a // inside a string is part of the string, never a comment', () => {
  const line = '\t\taddVar(b, "x // not a comment")';
  assertScope(line, '"x // not a comment"', 'string.quoted.double.avap');
  assertNotScope(line, 'x // not a comment', 'comment');
  assertScope("addVar(u, 'http://example.com')", '//', 'string.quoted.single.avap');
  assertNotScope("addVar(u, 'http://example.com')", '//', 'comment');
  assertScope('s = "a // b" + t', '//', 'string.quoted.double.avap');
  assertNotScope('s = "a // b" + t', '//', 'comment');
  // Escapes: known ones are scoped, and an escaped quote does not end the string.
  const esc = 'addVar(q, "say \\"hi\\" \\d+ // x")';
  assertScope(esc, '\\"', 'constant.character.escape.avap');
  assertScope(esc, '//', 'string.quoted.double.avap');
  assertNotScope(esc, '\\d', 'constant.character.escape');
  // A quote right after a letter (it's) does not open a string.
  assertNotScope("addVar(t, it's) // note", 's) ', 'string');
  assertScope("addVar(t, it's) // note", '// note', 'comment.line.double-slash.avap');
});

test('comment lines', () => {
  assertScope('// a full-line comment', '// a full-line comment', 'comment.line.double-slash.avap');
  assertScope('   // indented comment', '// indented comment', 'comment.line.double-slash.avap');
  assertScope('// x = a // 2', 'x = a // 2', 'comment.line.double-slash.avap');
  assertScope('//no space', '//', 'punctuation.definition.comment.avap');
  assertNotScope('   // indented comment', '   ', 'comment');
});

test('a trailing comment after a command call is a comment', () => {
  const line = '    addVar(a, 1)   // trailing comment';
  assertScope(line, '// trailing comment', 'comment.line.double-slash.avap');
  assertScope(line, 'addVar', 'support.function.builtin.avap');
  assertScope(line, '1', 'constant.numeric.integer.avap');
  // The URL's // stays in the argument; the one after `)` is the comment.
  const url = 'addVar(url, https://example.com/a)   // a comment; the URL keeps its //';
  assertNotScope(url, 'https://example.com/a', 'comment');
  assertScope(url, '// a comment; the URL keeps its //', 'comment.line.double-slash.avap');
  // After a control command, a function call statement, the target form.
  assertScope('if(x, 3, >) // big', '// big', 'comment.line.double-slash.avap');
  assertScope('end() // if', '// if', 'comment.line.double-slash.avap');
  assertScope('audit(user) // 2', '// 2', 'comment.line.double-slash.avap');
  assertScope('n = getListLen(xs) // 3', '// 3', 'comment.line.double-slash.avap');
  // After a block's closing brace.
  assertScope('} // calc', '// calc', 'comment.line.double-slash.avap');
  assertScope('function twice(a){ return a * 2 } // one line', '// one line', 'comment.line.double-slash.avap');
  // Inside a call's arguments // is the operator.
  assertScope('addVar(h, 7 // 2)', '//', 'keyword.operator.arithmetic.floor-division.avap');
});

test('x = a // 2 is floor division, as the interpreter parses it', () => {
  const line = 'x = a // 2';
  assertScope(line, '//', 'keyword.operator.arithmetic.floor-division.avap');
  assertScope(line, '2', 'constant.numeric.integer.avap');
  assertScope(line, 'x', 'variable.other.assignment.avap');
  assertNotScope(line, 'a // 2', 'comment');
  // docs/LANGUAGE.md's trap: after an assignment an expression is code.
  assertScope('r = fact(10) // 3628800', '//', 'keyword.operator');
  assertScope('r = fact(10) // 3628800', '3628800', 'constant.numeric.integer.avap');
  assertScope('x = 7 // two', 'two', 'variable.other.readwrite.avap');
  assertScope('return n // 2', '//', 'keyword.operator');
  assertScope('y = (a // b) // -c', '//', 'keyword.operator', 1);
  // No operand can follow: the interpreter cuts a comment there.
  assertScope('x = a //', '//', 'comment.line.double-slash.avap');
  assertScope('x = a // # half', '// # half', 'comment.line.double-slash.avap');
  assertScope('return 1 // ...', '// ...', 'comment.line.double-slash.avap');
  // The documented limitation: words after // look like an operand, so this is
  // shown as a division although the interpreter reads a comment.
  assertScope('x = a // the half', '//', 'keyword.operator');
});

test('template strings embed ${...} as expressions', () => {
  const line = 'msg = `Hello ${name}, you are ${age}`';
  assertScope(line, '`Hello ', 'string.template.avap');
  assertScope(line, '${', 'punctuation.definition.template-expression.begin.avap');
  assertScope(line, '}', 'punctuation.definition.template-expression.end.avap');
  for (const name of ['name', 'age']) {
    assertScope(line, name, 'meta.template.expression.avap');
    assertScope(line, name, 'meta.embedded.line.avap');
    assertScope(line, name, 'variable.other.readwrite.avap');
  }
  assertScope(line, ', you are ', 'string.template.avap');
  assertNotScope(line, ', you are ', 'meta.template.expression');
  assertScope('RequestGet(`${svc}/users/${user_id}`, , , account)', '/users/', 'string.template.avap');
  assertScope('RequestGet(`${svc}/users/${user_id}`, , , account)', 'user_id', 'meta.embedded.line.avap');
  // \$ is an escape, not an interpolation; // in a template is text.
  assertNotScope('t = `cost: \\${x} // y`', 'x', 'meta.template.expression');
  assertScope('t = `cost: \\${x} // y`', '\\$', 'constant.character.escape.avap');
  assertScope('t = `cost: \\${x} // y`', '//', 'string.template.avap');
  assertNotScope('t = `cost: \\${x} // y`', '//', 'comment');
});

test('function definitions: name and parameters', () => {
  const line = 'function calc(amount, rate) {';
  assertScope(line, 'function', 'keyword.declaration.function.avap');
  assertScope(line, 'calc', 'entity.name.function.avap');
  assertScope(line, 'amount', 'variable.parameter.avap');
  assertScope(line, 'rate', 'variable.parameter.avap');
  assertScope(line, '{', 'punctuation.section.block.begin.avap');
  assertScope('}', '}', 'punctuation.section.block.end.avap');
  assertScope('function fact(n) { // comment', '// comment', 'comment.line.double-slash.avap');
  // A body on the header's line: each `;` piece is a statement.
  const one = 'function bump(a) { x = a + 1; return x }';
  assertScope(one, 'bump', 'entity.name.function.avap');
  assertScope(one, 'a', 'variable.parameter.avap');
  assertScope(one, 'x', 'variable.other.assignment.avap');
  assertScope(one, 'return', 'keyword.control.return.avap');
  assertScope(one, 'x', 'variable.other.readwrite.avap', 1);
  assertScope(one, '}', 'punctuation.section.block.end.avap');
  assertScope('function g(a){ audit(a); addVar(b, a) }', 'addVar', 'support.function.builtin.avap');
  // Calls of functions, and the built-in functions of expressions.
  assertScope('total = calc(100, 2)', 'calc', 'entity.name.function.call.avap');
  assertScope('a = str(12)', 'str', 'support.function.avap');
  assertScope('    return n * fact(n - 1)', 'return', 'keyword.control.return.avap');
  assertScope('    return n * fact(n - 1)', 'fact', 'entity.name.function.call.avap');
});

test('numbers', () => {
  const line = 'xs = [0, 42, 3.14, 2.5e-3, 1E6, -7]';
  for (const n of ['0', '42']) assertScope(line, n, 'constant.numeric.integer.avap');
  for (const n of ['3.14', '2.5e-3', '1E6']) assertScope(line, n, 'constant.numeric.float.avap');
  assertScope(line, '-', 'keyword.operator.arithmetic.avap', 1);
  assertScope(line, '7', 'constant.numeric.integer.avap');
  // Digits inside a name are part of the name.
  assertScope('addResult(r1)', 'r1', 'variable.other.readwrite.avap');
  assertNotScope('addResult(r1)', '1', 'constant.numeric');
});

test('constants, keywords and operators', () => {
  const line = 'v = [True, False, None, true, false, null]';
  for (const c of ['True', 'False', 'true', 'false']) assertScope(line, c, 'constant.language.boolean.avap');
  for (const c of ['None', 'null']) assertScope(line, c, 'constant.language.null.avap');
  const logic = 'c = "x" == "x" and not (1 != 1) or d';
  for (const k of ['and', 'not', 'or']) assertScope(logic, k, 'keyword.operator.logical.avap');
  assertScope(logic, '==', 'keyword.operator.comparison.avap');
  assertScope(logic, '!=', 'keyword.operator.comparison.avap');
  assertScope('c = 2 ** 3 ** 2', '**', 'keyword.operator.arithmetic.power.avap');
  assertScope('d = {"k": 1}', ':', 'punctuation.separator.key-value.avap');
  assertScope('_status = 404', '_status', 'variable.other.assignment.avap');
  assertScope('addResult(__last_error__)', '__last_error__', 'variable.language.avap');
  // Names that merely start like a keyword are names.
  assertScope('addResult(nothing)', 'nothing', 'variable.other.readwrite.avap');
  assertScope('addResult(order)', 'order', 'variable.other.readwrite.avap');
});

test('nothing carries over from one line to the next', () => {
  // An unterminated string or bracket ends with its line.
  let state = vsctm.INITIAL;
  for (const line of ['y = "unterminated', 'x = (1 +', 'addVar(a, [1, 2', 'm = `a ${b', 'function f(a, b']) {
    state = grammar.tokenizeLine(line, state).ruleStack;
    assert.ok(state.equals(lineStart) && state.depth === 1, `the state after ${JSON.stringify(line)} is the initial one`);
  }
  assertScope('addVar(a, 1) // ok', 'addVar', 'support.function.builtin.avap');
});

test('every script under tests/cases tokenizes quickly and sanely', () => {
  const root = join(repo, 'tests', 'cases');
  const scripts = [];
  for (const group of readdirSync(root)) {
    if (!statSync(join(root, group)).isDirectory()) continue;
    for (const name of readdirSync(join(root, group))) {
      const file = join(root, group, name, 'script.avap');
      if (existsSync(file)) scripts.push(file);
    }
  }
  assert.ok(scripts.length >= 50, `found ${scripts.length} scripts`);
  // Warm up: the first line compiles the grammar's regular expressions.
  grammar.tokenizeLine('x = addVar(a, `${b}` // 2) // c', vsctm.INITIAL);
  let lines = 0;
  let slowest = 0;
  for (const file of scripts) {
    const where = file.slice(repo.length + 1);
    let state = vsctm.INITIAL;
    readFileSync(file, 'utf8').split('\n').forEach((raw, i) => {
      const line = raw.replace(/\r$/, '');
      const t0 = performance.now();
      const { tokens, ruleStack } = grammar.tokenizeLine(line, state);
      const ms = performance.now() - t0;
      slowest = Math.max(slowest, ms);
      assert.ok(ms < 50, `${where}:${i + 1} took ${ms.toFixed(1)} ms`);
      lines++;
      for (const t of tokens) {
        assert.equal(t.scopes[0], 'source.avap', `${where}:${i + 1}: a token without the base scope`);
        assert.ok(!t.scopes.some((s) => s.startsWith('invalid')), `${where}:${i + 1}: ${t.scopes.join(' ')}`);
      }
      // A comment, where there is one, starts at a `//` and runs to the end.
      const first = tokens.find((t) => has(t.scopes, 'comment'));
      if (first) {
        assert.equal(line.slice(first.startIndex, first.startIndex + 2), '//', `${where}:${i + 1}`);
        for (const t of tokens.filter((t) => t.startIndex >= first.startIndex)) {
          assert.ok(has(t.scopes, 'comment'), `${where}:${i + 1}: the comment is interrupted`);
        }
      }
      // A line that starts with `//` is a comment from there.
      if (line.trim().startsWith('//')) assert.ok(first, `${where}:${i + 1} is a comment line`);
      // Lines are independent: nothing is left open at the end of one.
      assert.ok(ruleStack.equals(lineStart), `${where}:${i + 1} leaves a rule open`);
      state = ruleStack;
    });
  }
  assert.ok(lines > 500, `tokenized ${lines} lines (slowest ${slowest.toFixed(2)} ms)`);
});

test('the extension manifest is consistent with the grammar and the files', () => {
  assert.equal(manifest.name, 'avap');
  assert.equal(manifest.publisher, 'avap');
  assert.ok(manifest.engines?.vscode, 'engines.vscode');
  assert.match(manifest.dependencies?.['vscode-languageclient'] ?? '', /^\^9\./);
  const [language] = manifest.contributes.languages;
  const [grammarEntry] = manifest.contributes.grammars;
  assert.equal(manifest.contributes.languages.length, 1);
  assert.equal(language.id, 'avap');
  assert.deepEqual(language.extensions, ['.avap']);
  assert.equal(grammarEntry.language, language.id);
  assert.equal(grammarEntry.scopeName, rawGrammar.scopeName);
  assert.equal(rawGrammar.scopeName, 'source.avap');
  assert.deepEqual(rawGrammar.fileTypes, language.extensions.map((e) => e.slice(1)));
  assert.ok(existsSync(grammarPath), grammarEntry.path);
  const configPath = join(extDir, language.configuration);
  assert.ok(existsSync(configPath), language.configuration);
  const main = join(extDir, manifest.main);
  assert.ok(existsSync(main), manifest.main);
  assert.ok(manifest.activationEvents.includes(`onLanguage:${language.id}`), 'activationEvents names the language');
  for (const key of ['avap.path', 'avap.catalog', 'avap.trace.server']) {
    assert.ok(manifest.contributes.configuration.properties[key], `setting ${key}`);
  }
  assert.equal(manifest.contributes.configuration.properties['avap.path'].default, 'avap');

  // extension.js parses, reads only contributed settings, and requires only
  // node's modules, `vscode` and declared dependencies.
  execFileSync(process.execPath, ['--check', main], { stdio: 'pipe' });
  const source = readFileSync(main, 'utf8');
  const settings = [...source.matchAll(/config\.get\('([^']+)'\)/g)].map((m) => `avap.${m[1]}`);
  assert.ok(settings.length >= 2);
  for (const key of settings) assert.ok(manifest.contributes.configuration.properties[key], `extension.js reads ${key}`);
  for (const [, mod] of source.matchAll(/require\('([^']+)'\)/g)) {
    if (mod.startsWith('node:') || mod === 'vscode') continue;
    const pkg = mod.split('/')[0];
    assert.ok(manifest.dependencies[pkg], `extension.js requires ${mod}, a declared dependency`);
  }
  assert.match(source, /args: \['lsp'\]/);
  assert.match(source, /cargo install --path cli/);
});

test('the language configuration: comments, brackets and indentation rules', () => {
  const config = JSON.parse(readFileSync(join(extDir, 'language-configuration.json'), 'utf8'));
  assert.equal(config.comments.lineComment, '//');
  for (const pair of ['()', '[]', '{}']) assert.ok(config.brackets.some(([o, c]) => o + c === pair), pair);
  for (const q of ['"', "'", '`']) assert.ok(config.autoClosingPairs.some((p) => p.open === q && p.close === q), q);
  const increase = new RegExp(config.indentationRules.increaseIndentPattern);
  const decrease = new RegExp(config.indentationRules.decreaseIndentPattern);
  for (const l of ['if(x, 1, =)', '  startLoop(i, 1, 10)', 'try()', 'else()', 'exception(err)', 'exception()', 'e2 = exception(err)', 'function calc(a, b) {', 'if(a, 1, =)  // note']) {
    assert.ok(increase.test(l), `indent after ${JSON.stringify(l)}`);
  }
  for (const l of ['addVar(a, 1)', 'end()', 'endLoop()', 'x = {"a": 1}', '// if(x, 1, =)']) {
    assert.ok(!increase.test(l), `no indent after ${JSON.stringify(l)}`);
  }
  for (const l of ['else()', '  end()', 'endLoop()', 'exception(e)', 'e2 = exception(err)', '}']) {
    assert.ok(decrease.test(l), `outdent ${JSON.stringify(l)}`);
  }
  for (const l of ['addVar(a, 1)', 'if(x, 1, =)', 'endpoint = 1']) {
    assert.ok(!decrease.test(l), `no outdent of ${JSON.stringify(l)}`);
  }
});
