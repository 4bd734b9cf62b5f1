# AVAP command `addResult(sourceVariable S)`, written for the original AVAP
# Python language server's exec runtime, from docs/COMMANDS.md.
P = task['properties']
name = P.get('sourceVariable', P.get('0'))
if not isinstance(name, str) or not name.strip():
    raise RuntimeError("addResult: the argument must be a variable name")
name = name.strip()
# A missing variable is exported as null; a second call replaces the first copy.
self.conector.results[name] = self.conector.variables.get(name)
