# AVAP command `AddvariableToJSON(Key V, Value V, TargetVariable T)`, written for the
# original AVAP Python language server's exec runtime, from docs/COMMANDS.md.
# Sets the key (its text) in the dict in the target, creating the dict when missing or
# null; an existing key keeps its place.
P = task['properties']
V = self.conector.variables

key, value = text(arg('Key', 0)), arg('Value', 1)
targets = [t.strip() for t in (P.get('TargetVariable', P.get('2')), task.get('context')) if isinstance(t, str) and t.strip()]
if not targets:
    raise RuntimeError("AddvariableToJSON: the target must be a variable name")
current = V.get(targets[0])
if current is None:
    current = {}
elif not isinstance(current, dict):
    raise RuntimeError(f"AddvariableToJSON: '{targets[0]}' holds a {type(current).__name__}, not a dict")
current[key] = value
for t in targets:
    V[t] = current
