# AVAP command `itemFromList(SourceVariable S, index V, TargetVariable T)`, written for the
# original AVAP Python language server's exec runtime, from docs/COMMANDS.md.
# The element at index (int, whole float or integer text; negative counts from the end).
P = task['properties']
V = self.conector.variables

name = raw_arg('SourceVariable', 0)
if not isinstance(name, str) or not name.strip():
    raise RuntimeError("itemFromList: the source must be a variable name")
name = name.strip()
source = V.get(name)
if not isinstance(source, list):
    raise RuntimeError(f"itemFromList: '{name}' is not a list")

index = arg('index', 1)
if isinstance(index, float) and index.is_integer():
    index = int(index)
elif isinstance(index, str):
    try:
        index = int(index.strip())
    except ValueError:
        pass
if not isinstance(index, int) or isinstance(index, bool):
    raise RuntimeError(f"itemFromList: the index must be an integer, got {index!r}")
if not -len(source) <= index < len(source):
    raise RuntimeError(f"itemFromList: index {index} is out of range for '{name}' (length {len(source)})")
value = source[index]

targets = [t.strip() for t in (raw_arg('TargetVariable', 2), task.get('context')) if isinstance(t, str) and t.strip()]
if not targets:
    raise RuntimeError("itemFromList: the target must be a variable name")
for t in targets:
    V[t] = value
