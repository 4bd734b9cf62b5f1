# AVAP command `variableToList(element V, TargetVariable T)`, written for the original
# AVAP Python language server's exec runtime, from docs/COMMANDS.md.
# Appends the value to the list in the target, creating it when missing or null.
P = task['properties']
V = self.conector.variables
element = arg('element', 0)

targets = [t.strip() for t in (P.get('TargetVariable', P.get('1')), task.get('context')) if isinstance(t, str) and t.strip()]
if not targets:
    raise RuntimeError("variableToList: the target must be a variable name")
current = V.get(targets[0])
if current is None:
    current = []
elif not isinstance(current, list):
    raise RuntimeError(f"variableToList: '{targets[0]}' holds a {type(current).__name__}, not a list")
current.append(element)
for t in targets:
    V[t] = current
