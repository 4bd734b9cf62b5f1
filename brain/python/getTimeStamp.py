# AVAP command `getTimeStamp(DateString V, Format V, TimeDelta V, TargetVariable T)`,
# written for the original AVAP Python language server's exec runtime, from
# docs/COMMANDS.md. Reads the whole text with the strftime format (an offset given by %z
# is honoured, otherwise the text is UTC), adds TimeDelta seconds and stores the Unix
# timestamp as a float. A date without a time is midnight; a time without a date is an error.
from datetime import datetime as _datetime, timezone as _timezone

CMD = 'getTimeStamp'

P = task['properties']
V = self.conector.variables


def arg(name, i):
    x = P[name] if name in P else P.get(str(i))
    return V[x] if isinstance(x, str) and x in V else x


def text(x):
    if isinstance(x, str):
        return x
    if x is None or isinstance(x, (bool, int, float)):
        return str(x)
    return json.dumps(x, separators=(',', ':'), ensure_ascii=False)


def seconds(x, what):
    if x is None or (isinstance(x, str) and not x.strip()):
        return 0
    if isinstance(x, str):
        try:
            x = float(x.strip()) if any(c in x for c in '.eE') else int(x.strip())
        except ValueError:
            raise RuntimeError(f"{CMD}: {what} must be a number of seconds, got '{x}'")
    if isinstance(x, bool) or not isinstance(x, (int, float)) or x != x:
        raise RuntimeError(f"{CMD}: {what} must be a number of seconds, got {x!r}")
    if abs(x) > 1e11:
        raise RuntimeError(f"{CMD}: {what} {x} is beyond 1e11 seconds")
    return x



source = text(arg('DateString', 0))
fmt = text(arg('Format', 1))
if not any('%' + d in fmt for d in 'YyCmdejbBhFDxGgUWVs'):
    raise RuntimeError(f"{CMD}: the format '{fmt}' has no date, only a time")
try:
    parsed = _datetime.strptime(source, fmt)
except ValueError as e:
    raise RuntimeError(f"{CMD}: '{source}' does not match the format '{fmt}': {e}")
if parsed.tzinfo is None:
    parsed = parsed.replace(tzinfo=_timezone.utc)
value = float(parsed.timestamp() + seconds(arg('TimeDelta', 2), 'TimeDelta'))

targets = [t.strip() for t in (P.get('TargetVariable', P.get('3')), task.get('context')) if isinstance(t, str) and t.strip()]
if not targets:
    raise RuntimeError(f"{CMD}: the target must be a variable name")
for t in targets:
    V[t] = value
