# AVAP command `getQueryParamList(TargetVariable T)`, written for the original AVAP
# Python language server's exec runtime, from docs/COMMANDS.md.
# One single-entry dict per query parameter, in order, repeats included; values stay text.
from urllib.parse import parse_qsl as _parse_qsl

P = task['properties']
handler = self.conector.req
request = getattr(handler, 'request', handler)
query = getattr(request, 'query', '') or ''
value = [{k: v} for k, v in _parse_qsl(query, keep_blank_values=True)]

targets = [t.strip() for t in (P.get('TargetVariable', P.get('0')), task.get('context')) if isinstance(t, str) and t.strip()]
if not targets:
    raise RuntimeError("getQueryParamList: the target must be a variable name")
for t in targets:
    self.conector.variables[t] = value
