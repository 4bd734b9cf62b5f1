# AVAP command `if(variable V, variableValue V, comparator V)`, written for the original
# AVAP Python language server's exec runtime, from docs/COMMANDS.md.
# The server hands this entry the raw arguments and the parsed branches; it compares the
# two sides and runs the chosen branch's nodes through self.process_step.
import asyncio as _asyncio

P = task['properties']
V = self.conector.variables


def arg(name, i):
    return P[name] if name in P else P.get(str(i))


def side(x):
    return V[x] if isinstance(x, str) and x in V else x   # a bare word names a variable if one exists


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


def text(x):
    if isinstance(x, str):
        return x
    if x is None or isinstance(x, (bool, int, float)):
        return str(x)
    return json.dumps(x, separators=(',', ':'), ensure_ascii=False)


def run_step(node):
    # process_step re-enters the server's event loop. The server's workers make the loop
    # re-entrant (nest_asyncio) at start-up; an app built in-process (the test suite) has
    # not, so do the same here before the first nested step.
    loop = _asyncio.get_event_loop()
    if loop.is_running() and not hasattr(loop, '_nest_patched'):
        import nest_asyncio
        nest_asyncio.apply(loop)
    return self.process_step(node)


left, right = side(arg('variable', 0)), side(arg('variableValue', 1))
op = str(side(arg('comparator', 2))).strip()
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
