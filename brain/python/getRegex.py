# AVAP command `getRegex(SourceVariable V, rePattern V, TargetVariable T)`, written for
# the original AVAP Python language server's exec runtime, from docs/COMMANDS.md.
# Stores every whole match in the text, concatenated in order, or null when none.
# \d \w \s \b are ASCII-only; an unescaped space outside a class matches any white-space.
CMD = 'getRegex'
P = task['properties']
V = self.conector.variables

matches = [m.group(0) for m in compile_pattern(text(arg('rePattern', 1))).finditer(text(arg('SourceVariable', 0)))]
value = ''.join(matches) if matches else None

targets = [t.strip() for t in (P.get('TargetVariable', P.get('2')), task.get('context')) if isinstance(t, str) and t.strip()]
if not targets:
    raise RuntimeError(f"{CMD}: the target must be a variable name")
for t in targets:
    V[t] = value
