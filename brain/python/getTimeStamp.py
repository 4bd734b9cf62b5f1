# AVAP command `getTimeStamp(DateString V, Format V, TimeDelta V, TargetVariable T)`,
# written for the original AVAP Python language server's exec runtime, from
# docs/COMMANDS.md. Reads the whole text with the strftime format (an offset given by %z
# is honoured, otherwise the text is UTC), adds TimeDelta seconds and stores the Unix
# timestamp as a float. A date without a time is midnight; a time without a date is an error.
from datetime import datetime as _datetime, timezone as _timezone

CMD = 'getTimeStamp'
P = task['properties']
V = self.conector.variables

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
