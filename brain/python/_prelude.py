# Prepended to every standard command's payload by brain/src/python.rs (this file, a
# newline, then brain/python/<command>.py), so the original AVAP Python language server
# compile()s and exec()s both as one text in one namespace. Written for that server's exec
# runtime, from docs/COMMANDS.md: these are the helpers the commands share.
#
# Safe to run before any command: only imports and definitions; nothing here reads `task`
# or `self` when the payload starts. The helpers look up, when called, the globals the
# command file defines: P (task['properties']), V (self.conector.variables) and CMD (the
# command name used in error messages; only seconds, fmt_date, compile_pattern and pairs
# need it). Names defined here: arg, raw_arg, text, seconds, fmt_date, compile_pattern,
# regex_call, RegexTimeout, pairs, run_step, _ast, _asyncio, _os, _signal, _threading, _time.
import ast as _ast
import asyncio as _asyncio
import os as _os
import signal as _signal
import threading as _threading
import time as _time


# Argument `name` (or position i); a string naming an existing variable gives its value.
def arg(name, i):
    x = P[name] if name in P else P.get(str(i))
    return V[x] if isinstance(x, str) and x in V else x


# Argument `name` (or position i) as written, unresolved (for variable names).
def raw_arg(name, i):
    return P[name] if name in P else P.get(str(i))


# The text form of a value: strings as they are, scalars via str(), the rest as compact JSON.
def text(x):
    if isinstance(x, str):
        return x
    if x is None or isinstance(x, (bool, int, float)):
        return str(x)
    return json.dumps(x, separators=(',', ':'), ensure_ascii=False)


# A number of seconds from a number or numeric text; empty or null is 0.
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


# The regular expression as the Rust regex crate reads it: \d \w \s \b ASCII-only, and an
# unescaped space outside a class matches any one white-space character.
def compile_pattern(pattern):
    if len(pattern.encode('utf-8')) > 4096:
        raise RuntimeError(f"{CMD}: the regular expression is longer than 4096 bytes")
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == '\\' and i + 1 < len(pattern):
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if c == '[' and not in_class:
            in_class = True
        elif c == ']' and in_class:
            in_class = False
        out.append('\\s' if c == ' ' and not in_class else c)
        i += 1
    try:
        return re.compile(''.join(out), re.ASCII)
    except re.error as e:
        raise RuntimeError(f"{CMD}: invalid regular expression '{pattern}': {e}")


class RegexTimeout(Exception):
    pass


# Runs fn() (a match over `subject`) within AVAP_REGEX_TIMEOUT_MS (1000). Python's `re`
# backtracks: a pattern like (a+)+$ takes exponential time, so the text is capped at 1 MiB
# and the match is cut off at the deadline. On the main thread (where the original server
# runs commands) a SIGALRM timer interrupts the matcher; elsewhere the match runs in a
# forked child that is killed at the deadline.
def regex_call(fn, subject):
    if len(subject.encode('utf-8')) > 1 << 20:
        raise RuntimeError(f"{CMD}: the text is longer than 1048576 bytes")
    try:
        ms = int(_os.environ.get('AVAP_REGEX_TIMEOUT_MS', '').strip() or 1000)
    except ValueError:
        ms = 1000
    ms = ms if ms > 0 else 1000
    too_slow = RuntimeError(f"{CMD}: the regular expression took longer than {ms} ms (AVAP_REGEX_TIMEOUT_MS)")
    if _threading.current_thread() is _threading.main_thread():
        def _expired(signum, frame):
            raise RegexTimeout()
        previous = _signal.signal(_signal.SIGALRM, _expired)
        outer = _signal.setitimer(_signal.ITIMER_REAL, ms / 1000)
        try:
            return fn()
        except RegexTimeout:
            raise too_slow from None
        finally:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
            _signal.signal(_signal.SIGALRM, previous)
            if outer[0] > 0:
                _signal.setitimer(_signal.ITIMER_REAL, max(outer[0] - ms / 1000, 0.001), outer[1])
    import pickle as _pickle
    import select as _select
    read_end, write_end = _os.pipe()
    pid = _os.fork()
    if pid == 0:
        try:
            try:
                out = ('ok', fn())
            except BaseException as e:
                out = ('error', str(e))
            data = _pickle.dumps(out)
            while data:
                data = data[_os.write(write_end, data):]
        finally:
            _os._exit(0)
    _os.close(write_end)
    chunks, deadline = [], _time.monotonic() + ms / 1000
    try:
        while True:
            left = deadline - _time.monotonic()
            if left <= 0 or not _select.select([read_end], [], [], left)[0]:
                _os.kill(pid, _signal.SIGKILL)
                raise too_slow
            chunk = _os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        _os.close(read_end)
        _os.waitpid(pid, 0)
    kind, value = _pickle.loads(b''.join(chunks))
    if kind != 'ok':
        raise RuntimeError(f"{CMD}: {value}")
    return value


# querystring/headers: a dict, the JSON text of an object, a Python dict literal, or empty.
def pairs(x, what):
    if x is None or (isinstance(x, str) and not x.strip()):
        return {}
    if isinstance(x, str):
        try:
            x = json.loads(x)
        except ValueError:
            try:
                x = _ast.literal_eval(x)
            except (ValueError, SyntaxError):
                pass
    if not isinstance(x, dict):
        raise RuntimeError(f"{CMD}: {what} must be a dict, the JSON text of an object, or empty")
    return {str(k): text(v) for k, v in x.items()}


def run_step(node):
    # process_step re-enters the server's event loop. The server's workers make the loop
    # re-entrant (nest_asyncio) at start-up; an app built in-process (the test suite) has
    # not, so do the same here before the first nested step.
    loop = _asyncio.get_event_loop()
    if loop.is_running() and not hasattr(loop, '_nest_patched'):
        import nest_asyncio
        nest_asyncio.apply(loop)
    return self.process_step(node)
