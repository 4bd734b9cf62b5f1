# AVAP command `getRegex(SourceVariable V, rePattern V, TargetVariable T)`, written for
# the original AVAP Python language server's exec runtime, from docs/COMMANDS.md.
# Stores every whole match in the text, concatenated in order, or null when none.
# \d \w \s \b are ASCII-only; an unescaped space outside a class matches any white-space.
CMD = 'getRegex'
P = task['properties']
V = self.conector.variables


def arg(name, i):
    x = P[name] if name in P else P.get(str(i))
    return V[x] if isinstance(x, str) and x in V else x


def text(x):
    if isinstance(x, str):
        return x
    if x is None or isinstance(x, (bool, int, float)):
        return str(x)
    return json.dumps(x, separators=(',', ':'), ensure_ascii=False)


def compile_pattern(pattern):
    if len(pattern.encode('utf-8')) > 4096:
        raise RuntimeError(f"{CMD}: the regular expression is longer than 4096 bytes")
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == '\\' and i + 1 < len(pattern):
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if c == '[' and not in_class:
            in_class = True
        elif c == ']' and in_class:
            in_class = False
        out.append('\\s' if c == ' ' and not in_class else c)
        i += 1
    try:
        return re.compile(''.join(out), re.ASCII)
    except re.error as e:
        raise RuntimeError(f"{CMD}: invalid regular expression '{pattern}': {e}")


matches = [m.group(0) for m in compile_pattern(text(arg('rePattern', 1))).finditer(text(arg('SourceVariable', 0)))]
value = ''.join(matches) if matches else None

targets = [t.strip() for t in (P.get('TargetVariable', P.get('2')), task.get('context')) if isinstance(t, str) and t.strip()]
if not targets:
    raise RuntimeError(f"{CMD}: the target must be a variable name")
for t in targets:
    V[t] = value
