# AVAP command `addVar(targetVarName T, varValue V)`, written for the original AVAP
# Python language server's exec runtime, from docs/COMMANDS.md.
import re as _re

P = task['properties']
V = self.conector.variables

value = raw_arg('varValue', 1)
if isinstance(value, str) and value in V:
    value = V[value]                      # a bare word naming a variable
elif isinstance(value, str) and _re.fullmatch(r'-?[0-9]+', value) and -2**63 <= int(value) < 2**63:
    value = int(value)                    # digits-only text becomes an int

target = raw_arg('targetVarName', 0) or task.get('context')
if not isinstance(target, str) or not target.strip():
    raise RuntimeError("addVar: the target must be a variable name")
V[target.strip()] = value
if task.get('context') and task['context'] != target:
    V[task['context']] = value
