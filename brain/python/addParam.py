# AVAP command `addParam(param V, variable T)`, written for the original AVAP
# Python language server's exec runtime, from docs/COMMANDS.md.
# Reads the query string first, then the top-level keys of the JSON body
# (except script, package, variables); numeric text becomes int or float.
import re as _re
from urllib.parse import parse_qsl as _parse_qsl

P = task['properties']
V = self.conector.variables


def numeric(s):
    t = s.strip()
    if _re.fullmatch(r'[+-]?[0-9]+', t):
        return int(t)
    if _re.fullmatch(r'[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?', t):
        return float(t)
    return s


param = str(arg('param', 0))

handler = self.conector.req
request = getattr(handler, 'request', handler)   # the tornado handler, or a bare request
value = None
query = _parse_qsl(getattr(request, 'query', '') or '', keep_blank_values=True)
found = [v for k, v in query if k == param]
if found:
    value = numeric(found[0])
else:
    try:
        body = json.loads(getattr(request, 'body', b'') or b'null')
    except ValueError:
        body = None
    if isinstance(body, dict) and param in body and param not in ('script', 'package', 'variables'):
        value = body[param]
        if isinstance(value, str):
            value = numeric(value)

target = raw_arg('variable', 1) or task.get('context')
if not isinstance(target, str) or not target.strip():
    raise RuntimeError("addParam: the target must be a variable name")
V[target.strip()] = value
if task.get('context'):
    V[task['context']] = value
