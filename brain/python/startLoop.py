# AVAP command `startLoop(varName T, from V, to V)`, written for the original AVAP
# Python language server's exec runtime, from docs/COMMANDS.md.
# That server runs startLoop natively and never calls this entry; it still works if called:
# the body (task['sequence']) runs for varName = from .. to, both included.
P = task['properties']
V = self.conector.variables


def bound(x, what):
    if isinstance(x, float) and x.is_integer():
        return int(x)
    if isinstance(x, int) and not isinstance(x, bool):
        return x
    if isinstance(x, str):
        try:
            return int(x.strip())
        except ValueError:
            pass
    raise RuntimeError(f"startLoop: the bound '{what}' must be an integer, got {x!r}")


name = raw_arg('varName', 0)
if not isinstance(name, str) or not name.strip():
    raise RuntimeError("startLoop: the loop variable must be a name")
name = name.strip()
start, stop = bound(arg('from', 1), 'from'), bound(arg('to', 2), 'to')
for i in range(start, stop + 1):
    V[name] = i
    for node in task.get('sequence', []):
        run_step(node)
