# AVAP command `getRegex(SourceVariable V, rePattern V, TargetVariable T)`, written for
# the original AVAP Python language server's exec runtime, from docs/COMMANDS.md.
# Stores every whole match in the text, concatenated in order, or null when none.
# \d \w \s \b are ASCII-only; an unescaped space outside a class matches any white-space.
# The match has a deadline and the text a size cap (regex_call, in the prelude).
CMD = 'getRegex'
P = task['properties']
V = self.conector.variables

regex, source = compile_pattern(text(arg('rePattern', 1))), text(arg('SourceVariable', 0))
matches = regex_call(lambda: [m.group(0) for m in regex.finditer(source)], source)
value = ''.join(matches) if matches else None

targets = [t.strip() for t in (P.get('TargetVariable', P.get('2')), task.get('context')) if isinstance(t, str) and t.strip()]
if not targets:
    raise RuntimeError(f"{CMD}: the target must be a variable name")
for t in targets:
    V[t] = value
