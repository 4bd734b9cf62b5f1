# AVAP command `replace(SourceVariable V, rePattern V, newValue V, TargetVariable T)`,
# written for the original AVAP Python language server's exec runtime, from
# docs/COMMANDS.md. Replaces every non-overlapping match in the source's text; in
# newValue, $1 / $name / ${name} refer to groups and $$ is a '$'. \d \w \s \b are
# ASCII-only and an unescaped space outside a class matches any one white-space character.
CMD = 'replace'
P = task['properties']
V = self.conector.variables


def expand(template, m):
    out, i = [], 0
    while i < len(template):
        c = template[i]
        if c != '$' or i + 1 >= len(template):
            out.append(c)
            i += 1
            continue
        if template[i + 1] == '$':
            out.append('$')
            i += 2
            continue
        if template[i + 1] == '{' and '}' in template[i + 2:]:
            close = template.index('}', i + 2)
            ref, i = template[i + 2:close], close + 1
        else:
            j = i + 1
            while j < len(template) and (template[j].isalnum() or template[j] == '_'):
                j += 1
            if j == i + 1:
                out.append('$')
                i += 1
                continue
            ref, i = template[i + 1:j], j
        try:
            group = m.group(int(ref) if ref.isdigit() else ref)
        except IndexError:
            group = None
        out.append(group or '')           # a group that does not exist or did not match: ''
    return ''.join(out)


source = text(arg('SourceVariable', 0))
regex = compile_pattern(text(arg('rePattern', 1)))
new_value = text(arg('newValue', 2))
value = regex_call(lambda: regex.sub(lambda m: expand(new_value, m), source), source)

targets = [t.strip() for t in (P.get('TargetVariable', P.get('3')), task.get('context')) if isinstance(t, str) and t.strip()]
if not targets:
    raise RuntimeError(f"{CMD}: the target must be a variable name")
for t in targets:
    V[t] = value
