# AVAP command `if(variable V, variableValue V, comparator V)`, written for the original
# AVAP Python language server's exec runtime, from docs/COMMANDS.md.
# The server hands this entry the raw arguments and the parsed branches; it compares the
# two sides and runs the chosen branch's nodes through self.process_step.
P = task['properties']
V = self.conector.variables


def number(x):
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return x
    if isinstance(x, str):
        t = x.strip()
        try:
            return int(t)
        except ValueError:
            try:
                f = float(t)
                return f if f == f and abs(f) != float('inf') else None
            except ValueError:
                return None
    return None


left, right = arg('variable', 0), arg('variableValue', 1)   # a bare word names a variable if one exists
op = str(arg('comparator', 2)).strip()
if op == '=':
    op = '=='
if op not in ('==', '!=', '<', '>', '<=', '>='):
    raise RuntimeError(f"if: unknown comparator '{op}'")

a, b = number(left), number(right)
if a is None or b is None:
    a, b = text(left), text(right)
holds = {'==': a == b, '!=': a != b, '<': a < b, '>': a > b, '<=': a <= b, '>=': a >= b}[op]

for node in task.get('branches', {}).get('true' if holds else 'false', []):
    result = run_step(node)
    if isinstance(result, dict) and '__return__' in result:
        break   # a return ends the branch (the server does not carry it further)
