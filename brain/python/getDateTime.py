# AVAP command `getDateTime(Format V, TimeDelta V, TimeZone V, TargetVariable T)`, written
# for the original AVAP Python language server's exec runtime, from docs/COMMANDS.md.
# Now plus TimeDelta seconds, formatted (chrono-style strftime) in the IANA zone TimeZone
# (empty: UTC); an empty Format stores the Unix timestamp as a float.
# Zones come from the server machine's tz database (zoneinfo).
import time as _time
from datetime import datetime as _datetime, timezone as _timezone
import zoneinfo as _zoneinfo

CMD = 'getDateTime'
P = task['properties']
V = self.conector.variables

fmt = arg('Format', 0)
fmt = '' if fmt is None else text(fmt)
stamp = _time.time() + seconds(arg('TimeDelta', 1), 'TimeDelta')
zone_name = arg('TimeZone', 2)
zone_name = '' if zone_name is None else text(zone_name).strip()
if not zone_name:
    zone = _timezone.utc
else:
    try:
        zone = _zoneinfo.ZoneInfo(zone_name)
    except (ValueError, _zoneinfo.ZoneInfoNotFoundError, OSError):
        raise RuntimeError(f"{CMD}: unknown time zone '{zone_name}'")
value = stamp if fmt == '' else fmt_date(_datetime.fromtimestamp(stamp, zone), fmt)

targets = [t.strip() for t in (P.get('TargetVariable', P.get('3')), task.get('context')) if isinstance(t, str) and t.strip()]
if not targets:
    raise RuntimeError(f"{CMD}: the target must be a variable name")
for t in targets:
    V[t] = value
