# AVAP command `randomString(Pattern V, Length V, TargetVariable T)`, written for the
# original AVAP Python language server's exec runtime, from docs/COMMANDS.md.
# Pattern is one bracketed class ([A-Za-z0-9], [a-f\d], ...); each of the Length
# characters is drawn uniformly from it with the OS secure source (secrets).
import secrets as _secrets

CMD = 'randomString'
P = task['properties']
V = self.conector.variables


def char_class(pattern):
    if not (isinstance(pattern, str) and len(pattern) >= 2 and pattern[0] == '[' and pattern[-1] == ']'):
        raise RuntimeError(f"{CMD}: the pattern must be one bracketed class such as [a-z0-9], got {pattern!r}")
    body = pattern[1:-1]
    if body.startswith('^'):
        raise RuntimeError(f"{CMD}: negated classes are not supported: {pattern}")
    items, i = [], 0              # (char or a set of chars, escaped?)
    escapes = {'d': '0123456789', 's': ' \t\n\r\x0b\x0c', 'n': '\n', 't': '\t', 'r': '\r',
               'w': 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_'}
    while i < len(body):
        c = body[i]
        if c == '\\':
            if i + 1 >= len(body):
                raise RuntimeError(f"{CMD}: the pattern ends with a lone backslash: {pattern}")
            e = body[i + 1]
            if e in escapes:
                items.append((escapes[e], True) if len(escapes[e]) > 1 else (escapes[e], 'lit'))
            elif e.isalnum():
                raise RuntimeError(f"{CMD}: unknown escape '\\{e}' in {pattern}")
            else:
                items.append((e, 'lit'))
            i += 2
            continue
        if c in '[]':
            raise RuntimeError(f"{CMD}: unescaped '{c}' inside the class {pattern}")
        items.append((c, False))
        i += 1
    chars, j = [], 0
    while j < len(items):
        c, kind = items[j]
        if (j + 2 < len(items) and items[j + 1] == ('-', False) and kind is not True
                and items[j + 2][1] is not True):
            lo, hi = ord(c), ord(items[j + 2][0])
            if lo > hi:
                raise RuntimeError(f"{CMD}: reversed range '{c}-{items[j + 2][0]}' in {pattern}")
            if hi - lo >= 65536:
                raise RuntimeError(f"{CMD}: the class {pattern} has more than 65536 characters")
            chars.extend(chr(k) for k in range(lo, hi + 1))
            j += 3
        else:
            chars.extend(c)
            j += 1
    chars = list(dict.fromkeys(chars))    # a character listed twice counts once
    if not chars:
        raise RuntimeError(f"{CMD}: the class {pattern} is empty")
    if len(chars) > 65536:
        raise RuntimeError(f"{CMD}: the class {pattern} has more than 65536 characters")
    return chars


def length(x):
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    elif isinstance(x, str):
        try:
            x = int(x.strip())
        except ValueError:
            pass
    if not isinstance(x, int) or isinstance(x, bool) or x < 0:
        raise RuntimeError(f"{CMD}: Length must be a non-negative integer, got {x!r}")
    return x


chars = char_class(arg('Pattern', 0))
value = ''.join(_secrets.choice(chars) for _ in range(length(arg('Length', 1))))

targets = [t.strip() for t in (P.get('TargetVariable', P.get('2')), task.get('context')) if isinstance(t, str) and t.strip()]
if not targets:
    raise RuntimeError(f"{CMD}: the target must be a variable name")
for t in targets:
    V[t] = value
