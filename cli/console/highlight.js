// AVAP highlighting for the console, driven by the editors' TextMate grammar
// (editors/vscode/syntaxes/avap.tmLanguage.json, which `avap dev` embeds and
// serves as assets/avap.tmLanguage.json): the page has no rules of its own.
//
// This is a small interpreter of TextMate grammars, enough for this one:
// `match` rules with `captures`, `begin`/`end` rules with `beginCaptures`,
// `endCaptures`, `contentName` and nested `patterns`, and `include` of
// repository rules. The grammar's regular expressions are Oniguruma's; the
// ones it uses (look-behind, \p{L}, ^ and $ for the line) mean the same in
// JavaScript with the `u` flag, so they are used as written.
//
// Every rule of the AVAP grammar ends at the end of its line (the language
// is line-oriented), so each line is tokenized on its own, from the root.
// The rules for choosing a match are TextMate's: the earliest match wins,
// then the first pattern in the list; a frame's `end` wins a tie. A test
// (cli/console/test/highlight.test.mjs) checks that this gives the same
// scopes as VS Code's own engine (vscode-textmate on Oniguruma) on every
// line of the repository's scripts.

/** Compiles a grammar (the parsed JSON) for `tokenizeLine`. */
export function compileGrammar(json) {
  const repository = json.repository || {};
  const compiled = new Map();
  const problems = [];

  function regex(source) {
    try {
      return new RegExp(source, 'dgu');
    } catch (e) {
      problems.push(`${source}: ${e.message}`);
      return null;
    }
  }

  function compile(rule) {
    if (compiled.has(rule)) return compiled.get(rule);
    const out = { name: rule.name, contentName: rule.contentName };
    compiled.set(rule, out);
    if (rule.include) {
      const key = rule.include.replace(/^#/, '');
      out.include = key === '$self' || key === '$base' ? json : repository[key];
      if (!out.include) problems.push(`unknown include ${rule.include}`);
    }
    if (rule.match) {
      out.match = regex(rule.match);
      out.captures = rule.captures;
    }
    if (rule.begin) {
      out.begin = regex(rule.begin);
      out.end = regex(rule.end);
      out.beginCaptures = rule.beginCaptures || rule.captures;
      out.endCaptures = rule.endCaptures || rule.captures;
    }
    out.patternRules = rule.patterns || [];
    return out;
  }

  // The rules a list of patterns tries, includes and containers flattened.
  const flattened = new Map();
  function flatten(patterns) {
    if (flattened.has(patterns)) return flattened.get(patterns);
    const out = [];
    const seen = new Set();
    (function walk(list) {
      for (const raw of list) {
        const rule = compile(raw);
        if (rule.include) {
          if (!seen.has(rule.include)) {
            seen.add(rule.include);
            walk(rule.include.match || rule.include.begin ? [rule.include] : rule.include.patterns || []);
          }
        } else if (rule.match || rule.begin) {
          out.push(rule);
        } else {
          walk(rule.patternRules);
        }
      }
    })(patterns);
    flattened.set(patterns, out);
    return out;
  }

  const root = json.patterns || [];
  // Compile every rule now, so that a bad expression is found at once.
  flatten(root);
  for (const rule of Object.values(repository)) flatten([rule]);
  for (const rule of compiled.values()) if (rule.begin) flatten(rule.patternRules);
  return { scopeName: json.scopeName, root: flatten(root), flatten, problems };
}

function execAt(re, line, pos) {
  if (!re) return null;
  re.lastIndex = pos;
  return re.exec(line);
}

/**
 * The tokens of one line: `[{ start, end, scopes }]`, covering the line,
 * `scopes` from the outermost (not counting the grammar's own) inward.
 */
export function tokenizeLine(grammar, line) {
  const tokens = [];
  const stack = [{ scopes: [], content: [], end: null, patterns: grammar.root }];
  let pos = 0;
  // Rules that matched nothing at `pos` and must not be tried there again.
  let banned = new Set();
  let bannedAt = -1;
  let steps = 0;

  const emit = (start, end, scopes) => {
    if (end <= start) return;
    const last = tokens[tokens.length - 1];
    if (last && last.end === start && same(last.scopes, scopes)) last.end = end;
    else tokens.push({ start, end, scopes });
  };
  // A match, split by its capture groups (each group's scope added to those
  // of the groups around it).
  const emitMatch = (m, captures, scopes) => {
    const [from, to] = m.indices[0];
    if (!captures) return emit(from, to, scopes);
    const groups = [];
    for (let i = 0; i < m.indices.length; i++) {
      const span = m.indices[i];
      const name = captures[i] && captures[i].name;
      if (span && name && span[1] > span[0]) groups.push({ from: span[0], to: span[1], name });
    }
    const cuts = new Set([from, to]);
    for (const g of groups) {
      cuts.add(g.from);
      cuts.add(g.to);
    }
    const points = [...cuts].sort((a, b) => a - b);
    for (let i = 0; i + 1 < points.length; i++) {
      const [a, b] = [points[i], points[i + 1]];
      const inner = groups.filter((g) => g.from <= a && b <= g.to).map((g) => g.name);
      emit(a, b, scopes.concat(inner));
    }
  };

  while (pos < line.length && steps++ < line.length * 8 + 64) {
    if (bannedAt !== pos) {
      banned = new Set();
      bannedAt = pos;
    }
    const top = stack[stack.length - 1];
    let best = null;
    if (top.end) {
      const m = execAt(top.end, line, pos);
      if (m) best = { m, end: true };
    }
    for (const rule of top.patterns) {
      if (banned.has(rule)) continue;
      const m = execAt(rule.match || rule.begin, line, pos);
      if (m && (!best || m.index < best.m.index)) best = { m, rule };
    }
    if (!best) break;
    const { m } = best;
    const start = m.index;
    const end = start + m[0].length;
    emit(pos, start, top.content);
    if (best.end) {
      emitMatch(m, top.endCaptures, top.scopes);
      stack.pop();
      // A frame opened and closed on nothing: do not open it here again.
      if (end === top.openedAt && top.emptyBegin) banned.add(top.rule);
      if (stack.length === 0) stack.push({ scopes: [], content: [], end: null, patterns: grammar.root });
    } else if (best.rule.match) {
      const scopes = best.rule.name ? top.content.concat(best.rule.name) : top.content;
      emitMatch(m, best.rule.captures, scopes);
      if (end === start) banned.add(best.rule);
    } else {
      const rule = best.rule;
      const scopes = rule.name ? top.content.concat(rule.name) : top.content;
      emitMatch(m, rule.beginCaptures, scopes);
      stack.push({
        rule,
        scopes,
        content: rule.contentName ? scopes.concat(rule.contentName) : scopes,
        end: rule.end,
        endCaptures: rule.endCaptures,
        patterns: grammar.flatten(rule.patternRules),
        openedAt: end,
        emptyBegin: end === start,
      });
    }
    if (end > pos) pos = end;
  }
  emit(pos, line.length, stack[stack.length - 1].content);
  return tokens;
}

function same(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// Which colour a token gets: the innermost of its scopes that is named here.
const CLASSES = [
  ['comment', 'tok-comment'],
  ['constant.character.escape', 'tok-escape'],
  ['punctuation.definition.template-expression', 'tok-interp'],
  ['meta.template.expression', 'tok-plain'],
  ['string', 'tok-string'],
  ['constant.numeric', 'tok-number'],
  ['constant.language', 'tok-constant'],
  ['keyword.control', 'tok-control'],
  ['keyword.declaration', 'tok-keyword'],
  ['keyword.operator', 'tok-operator'],
  ['support.function.builtin', 'tok-command'],
  ['support.function', 'tok-builtin'],
  ['entity.name.function', 'tok-function'],
  ['variable.parameter', 'tok-param'],
  ['variable.language', 'tok-special'],
  ['variable.other.assignment', 'tok-target'],
  ['variable', 'tok-plain'],
];

/** The CSS class of a token's scopes, or '' for plain text. */
export function classOf(scopes) {
  for (let i = scopes.length - 1; i >= 0; i--) {
    const scope = scopes[i];
    for (const [prefix, cls] of CLASSES) {
      if (scope === prefix || scope.startsWith(prefix + '.')) return cls;
    }
  }
  return '';
}
