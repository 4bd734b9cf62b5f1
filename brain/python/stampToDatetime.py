# AVAP command `stampToDatetime(timestamp V, Format V, TimeDelta V, TargetVariable T)`,
# written for the original AVAP Python language server's exec runtime, from
# docs/COMMANDS.md. The timestamp plus TimeDelta seconds, formatted (chrono-style
# strftime) in UTC; an empty Format gives "".
from datetime import datetime as _datetime, timezone as _timezone

CMD = 'stampToDatetime'
P = task['properties']
V = self.conector.variables

stamp = seconds(arg('timestamp', 0), 'timestamp') + seconds(arg('TimeDelta', 2), 'TimeDelta')
fmt = arg('Format', 1)
fmt = '' if fmt is None else text(fmt)
value = '' if fmt == '' else fmt_date(_datetime.fromtimestamp(stamp, _timezone.utc), fmt)

targets = [t.strip() for t in (P.get('TargetVariable', P.get('3')), task.get('context')) if isinstance(t, str) and t.strip()]
if not targets:
    raise RuntimeError(f"{CMD}: the target must be a variable name")
for t in targets:
    V[t] = value
