# AVAP command `variableFromJSON(SourceVariable S, key V, TargetVariable T)`, written for
# the original AVAP Python language server's exec runtime, from docs/COMMANDS.md.
# The value of the key in the dict in the source (a string source is parsed as JSON and
# must be an object); a missing key, or a missing or null source, stores null.
P = task['properties']
V = self.conector.variables

name = raw_arg('SourceVariable', 0)
if not isinstance(name, str) or not name.strip():
    raise RuntimeError("variableFromJSON: the source must be a variable name")
source = V.get(name.strip())
if isinstance(source, str):
    try:
        source = json.loads(source)
    except ValueError as e:
        raise RuntimeError(f"variableFromJSON: '{name}' is not valid JSON: {e}")
    if not isinstance(source, dict):
        raise RuntimeError(f"variableFromJSON: '{name}' is JSON but not an object")
key = arg('key', 1)
if source is None:
    value = None
elif isinstance(source, dict):
    value = source.get(text(key))
else:
    raise RuntimeError(f"variableFromJSON: '{name}' holds a {type(source).__name__}, not a dict or JSON text")

targets = [t.strip() for t in (raw_arg('TargetVariable', 2), task.get('context')) if isinstance(t, str) and t.strip()]
if not targets:
    raise RuntimeError("variableFromJSON: the target must be a variable name")
for t in targets:
    V[t] = value
