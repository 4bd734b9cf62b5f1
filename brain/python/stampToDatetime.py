# AVAP command `stampToDatetime(timestamp V, Format V, TimeDelta V, TargetVariable T)`,
# written for the original AVAP Python language server's exec runtime, from
# docs/COMMANDS.md. The timestamp plus TimeDelta seconds, formatted (chrono-style
# strftime) in UTC; an empty Format gives "".
from datetime import datetime as _datetime, timezone as _timezone

CMD = 'stampToDatetime'

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


def fmt_date(dt, fmt):
    # strftime as the chrono crate reads it; an unknown item is an error.
    if len(fmt.encode('utf-8')) > 4096:
        raise RuntimeError(f"{CMD}: the date format is longer than 4096 bytes")
    bad = RuntimeError(f"{CMD}: invalid date format '{fmt}'")
    plain = set('YmbBhdaAwUWGVjHIpMSy')
    composite = {'D': '%m/%d/%y', 'x': '%m/%d/%y', 'F': '%Y-%m-%d', 'v': '%e-%b-%Y', 'R': '%H:%M',
                 'T': '%H:%M:%S', 'X': '%H:%M:%S', 'r': '%I:%M:%S %p', 'c': '%a %b %e %H:%M:%S %Y'}
    nanos = '%09d' % (dt.microsecond * 1000)
    off = dt.utcoffset()
    mins = int(off.total_seconds() // 60) if off is not None else 0
    sign, mins = ('-' if mins < 0 else '+'), abs(mins)
    out, i = [], 0
    while i < len(fmt):
        c = fmt[i]
        if c != '%':
            out.append(c)
            i += 1
            continue
        i += 1
        pad = fmt[i] if i < len(fmt) and fmt[i] in '-_0' else None
        i += 1 if pad else 0
        spec = None
        for s in ('.3f', '.6f', '.9f', '.f', '3f', '6f', '9f', '::z', ':z'):
            if fmt.startswith(s, i):
                spec, i = s, i + len(s)
                break
        if spec is None:
            if i >= len(fmt):
                raise bad
            spec, i = fmt[i], i + 1
        if spec in plain:
            piece = dt.strftime('%' + spec)
        elif spec in composite:
            piece = fmt_date(dt, composite[spec])
        elif spec == 'C':
            piece = '%02d' % (dt.year // 100)
        elif spec == 'e':
            piece = '%2d' % dt.day
        elif spec == 'k':
            piece = '%2d' % dt.hour
        elif spec == 'l':
            piece = '%2d' % (dt.hour % 12 or 12)
        elif spec == 'P':
            piece = dt.strftime('%p').lower()
        elif spec == 'u':
            piece = str(dt.isoweekday())
        elif spec == 'g':
            piece = '%02d' % (dt.isocalendar()[0] % 100)
        elif spec == 'f':
            piece = nanos
        elif spec in ('3f', '6f', '9f'):
            piece = nanos[:int(spec[0])]
        elif spec in ('.3f', '.6f', '.9f'):
            piece = '.' + nanos[:int(spec[1])]
        elif spec == '.f':
            piece = '' if dt.microsecond == 0 else '.' + (nanos[:3] if nanos[3:] == '000000' else nanos[:6] if nanos[6:] == '000' else nanos)
        elif spec == 'Z':
            piece = dt.tzname() or 'UTC'
        elif spec == 'z':
            piece = '%s%02d%02d' % (sign, mins // 60, mins % 60)
        elif spec in (':z', '::z'):
            piece = '%s%02d:%02d' % (sign, mins // 60, mins % 60) + (':00' if spec == '::z' else '')
        elif spec == 's':
            piece = str(int(dt.timestamp() // 1))
        elif spec == '+':
            piece = fmt_date(dt, '%Y-%m-%dT%H:%M:%S%.f%:z')
        elif spec in 'tn%':
            piece = {'t': '\t', 'n': '\n', '%': '%'}[spec]
        else:
            raise bad
        if pad and piece.strip().isdigit():     # %-d no padding, %_d spaces, %0e zeros
            digits = piece.strip().lstrip('0') or '0'
            piece = digits if pad == '-' else digits.rjust(len(piece), ' ' if pad == '_' else '0')
        out.append(piece)
    return ''.join(out)


stamp = seconds(arg('timestamp', 0), 'timestamp') + seconds(arg('TimeDelta', 2), 'TimeDelta')
fmt = arg('Format', 1)
fmt = '' if fmt is None else text(fmt)
value = '' if fmt == '' else fmt_date(_datetime.fromtimestamp(stamp, _timezone.utc), fmt)

targets = [t.strip() for t in (P.get('TargetVariable', P.get('3')), task.get('context')) if isinstance(t, str) and t.strip()]
if not targets:
    raise RuntimeError(f"{CMD}: the target must be a variable name")
for t in targets:
    V[t] = value
