# AVAP command `getListLen(SourceVariable S, TargetVariable T)`, written for the original
# AVAP Python language server's exec runtime, from docs/COMMANDS.md.
# Length of a list, a string (characters) or a dict; a missing or null source gives 0.
P = task['properties']
V = self.conector.variables
name = raw_arg('SourceVariable', 0)
if not isinstance(name, str) or not name.strip():
    raise RuntimeError("getListLen: the source must be a variable name")
source = V.get(name.strip())
if source is None:
    value = 0
elif isinstance(source, (list, str, dict)):
    value = len(source)
else:
    raise RuntimeError(f"getListLen: '{name}' is not a list, a string or a dict")

targets = [t.strip() for t in (P.get('TargetVariable', P.get('1')), task.get('context')) if isinstance(t, str) and t.strip()]
if not targets:
    raise RuntimeError("getListLen: the target must be a variable name")
for t in targets:
    V[t] = value
