# Appended to the prelude of RequestGet and RequestPost only (brain/src/python.rs): where an
# original server may send a script's HTTP request, and how much it may take back. The
# same rules as the AVAP host's `http` capability (policy/src/net.rs):
#
# - http and https only; at most 5 redirects, each hop checked like the first;
# - the host name is resolved here and every address it resolves to must be public
#   unicast: loopback, private, CGNAT, link-local (the cloud metadata address
#   169.254.169.254 included), unspecified, multicast, broadcast, documentation and
#   other reserved ranges, 6to4 and Teredo are refused, and an IPv4 address written as
#   IPv6 is judged as the IPv4 address it carries. The connection goes to the address
#   checked (not to a second lookup a rebinding DNS could answer differently); https is
#   still verified for the name;
# - AVAP_HTTP_ALLOW (comma-separated host:port, as on the host) opens exact destinations
#   whatever their address;
# - AVAP_HTTP_TIMEOUT_MS (10000) bounds the whole request, redirects included;
#   AVAP_HTTP_MAX_RESPONSE_BYTES (1048576) bounds the body (after decompression);
# - no proxy from the environment; Authorization, Cookie and Proxy-Authorization are
#   dropped when a redirect leaves the origin.
import ipaddress as _ipaddress
import os as _os
import socket as _socket
import time as _time
import urllib.parse as _urlparse

MAX_REDIRECTS = 5
_CREDENTIALS = ('authorization', 'cookie', 'proxy-authorization')


def _env_int(name, default):
    try:
        value = int(_os.environ.get(name, '').strip() or default)
    except ValueError:
        return default
    return value if value > 0 else default


def _v4_refusal(ip):
    a, b, c, _ = ip.packed
    if ip == _ipaddress.IPv4Address('169.254.169.254'):
        return 'the cloud metadata address'
    if int(ip) == 0:
        return 'an unspecified address'
    for hit, why in ((a == 0, "a 'this network' address"), (a == 127, 'a loopback address'),
                     (a == 10, 'a private address'), (a == 172 and 16 <= b <= 31, 'a private address'),
                     (a == 192 and b == 168, 'a private address'), (a == 169 and b == 254, 'a link-local address'),
                     (a == 100 and 64 <= b <= 127, 'a shared (CGNAT) address'),
                     (a == 192 and b == 0 and c == 0, 'an IETF protocol assignment address'),
                     ((a, b, c) in ((192, 0, 2), (198, 51, 100), (203, 0, 113)), 'a documentation address'),
                     (a == 198 and b in (18, 19), 'a benchmarking address'),
                     (224 <= a <= 239, 'a multicast address'), (a >= 240, 'a reserved address')):
        if hit:
            return why
    return None


# Why `ip` (an ipaddress object) may not be reached; None for a public address.
def ip_refusal(ip):
    if ip.version == 4:
        return _v4_refusal(ip)
    s = [int.from_bytes(ip.packed[i:i + 2], 'big') for i in range(0, 16, 2)]
    tail = _ipaddress.IPv4Address(ip.packed[12:])
    if s[:6] == [0, 0, 0, 0, 0, 0xffff] or s[:6] == [0x64, 0xff9b, 0, 0, 0, 0] \
            or (s[:6] == [0] * 6 and (s[6] != 0 or s[7] > 1)):
        return _v4_refusal(tail)
    first = s[0]
    if int(ip) == 0:
        return 'an unspecified address'
    if int(ip) == 1:
        return 'a loopback address'
    for hit, why in ((0xfe80 <= first <= 0xfebf, 'a link-local address'), (0xfec0 <= first <= 0xfeff, 'a site-local address'),
                     (0xfc00 <= first <= 0xfdff, 'a private (unique local) address'), (first >= 0xff00, 'a multicast address'),
                     (first == 0x2001 and s[1] == 0x0db8, 'a documentation address'),
                     (first == 0x2001 and s[1] == 0, 'a Teredo tunnel address'), (first == 0x2002, 'a 6to4 tunnel address')):
        if hit:
            return why
    return None if 0x2000 <= first <= 0x3fff else 'a reserved address'


def _allow_list():
    out = set()
    for entry in _os.environ.get('AVAP_HTTP_ALLOW', '').split(','):
        host, _, port = entry.strip().rpartition(':')
        if host and port.isdigit():
            out.add((host.strip('[]').lower(), int(port)))
    return out


# Where one hop may connect: [(family, address)] to try in order, and whether it is
# allow-listed. Raises when the destination is refused.
def _destination(url):
    parts = _urlparse.urlsplit(url)
    if parts.scheme not in ('http', 'https'):
        raise RuntimeError(f"{CMD}: destination refused: only http and https URLs are allowed, not '{parts.scheme}'")
    host = (parts.hostname or '').lower()
    if not host:
        raise RuntimeError(f"{CMD}: destination refused: '{url}' has no host")
    try:
        port = parts.port or (443 if parts.scheme == 'https' else 80)
    except ValueError:
        raise RuntimeError(f"{CMD}: destination refused: '{url}' has an invalid port")
    allowed = (host, port) in _allow_list()
    try:
        infos = _socket.getaddrinfo(host, port, type=_socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise RuntimeError(f"{CMD}: cannot resolve {host}: {e}")
    addresses = []
    for family, _, _, _, sockaddr in infos:
        ip = _ipaddress.ip_address(sockaddr[0].split('%')[0])
        why = None if allowed else ip_refusal(ip)
        if why:
            # Every address must pass, not only the first one tried.
            raise RuntimeError(f"{CMD}: destination refused: {host} resolves to {ip}, {why}")
        if (family, ip) not in addresses:
            addresses.append((family, ip))
    if not addresses:
        raise RuntimeError(f"{CMD}: cannot resolve {host}: no address")
    return parts, host, port, addresses


class _PinnedTLS(requests.adapters.HTTPAdapter):
    # https to an address: the server name for SNI and certificate checks stays the URL's.
    def __init__(self, name):
        self._name = name
        super().__init__(max_retries=0)

    def init_poolmanager(self, connections, maxsize, block=False, **kw):
        kw['server_hostname'] = self._name
        kw['assert_hostname'] = self._name
        super().init_poolmanager(connections, maxsize, block, **kw)


def _send(method, url, query, headers, data, deadline):
    parts, host, port, addresses = _destination(url)
    default_port = 443 if parts.scheme == 'https' else 80
    sent = dict(headers)
    if not any(k.lower() == 'host' for k in sent):
        shown = f'[{host}]' if ':' in host else host
        sent['Host'] = shown if port == default_port else f'{shown}:{port}'
    last = None
    for _, ip in addresses:
        literal = f'[{ip}]' if ip.version == 6 else str(ip)
        netloc = literal if port == default_port else f'{literal}:{port}'
        pinned = _urlparse.urlunsplit((parts.scheme, netloc, parts.path or '/', parts.query, ''))
        session = requests.Session()
        session.trust_env = False
        if parts.scheme == 'https':
            session.mount('https://', _PinnedTLS(host))
        left = deadline - _time.monotonic()
        if left <= 0:
            session.close()
            raise RuntimeError(f"{CMD}: request to {url} timed out")
        try:
            resp = session.request(method, pinned, params=query, headers=sent, data=data, allow_redirects=False,
                                   stream=True, timeout=(min(left, 10.0), left),
                                   verify=_os.environ.get('REQUESTS_CA_BUNDLE') or True)
            return session, resp
        except requests.RequestException as e:
            session.close()
            last = e
            # The next address only when this one could not be connected to: nothing was sent.
            reason = getattr(e.args[0], 'reason', None) if e.args else None
            if not (isinstance(e, requests.exceptions.ConnectTimeout)
                    or type(reason).__name__ in ('NewConnectionError', 'ConnectTimeoutError')):
                break
    raise RuntimeError(f"{CMD}: request to {url} failed: {last}")


def _read_capped(resp, url, deadline, cap):
    body = bytearray()
    try:
        for chunk in resp.iter_content(65536):
            body += chunk
            if len(body) > cap:
                raise RuntimeError(f"{CMD}: the response from {url} is over {cap} bytes (AVAP_HTTP_MAX_RESPONSE_BYTES)")
            if _time.monotonic() > deadline:
                raise RuntimeError(f"{CMD}: request to {url} timed out")
    except requests.RequestException as e:
        raise RuntimeError(f"{CMD}: request to {url} failed: {e}")
    finally:
        resp.close()
    return bytes(body)


# One request with the rules above. Returns (status, reason, final url, body bytes).
def http_request(method, url, query, headers, data):
    timeout_ms = _env_int('AVAP_HTTP_TIMEOUT_MS', 10000)
    cap = _env_int('AVAP_HTTP_MAX_RESPONSE_BYTES', 1 << 20)
    deadline = _time.monotonic() + timeout_ms / 1000
    origin = None
    for hop in range(MAX_REDIRECTS + 1):
        parts = _urlparse.urlsplit(url)
        here = (parts.scheme, (parts.hostname or '').lower(), parts.port)
        if origin is not None and here != origin:
            headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIALS}
        origin = here
        session, resp = _send(method, url, query if hop == 0 else None, headers, data, deadline)
        try:
            location = resp.headers.get('Location') if resp.status_code in (301, 302, 303, 307, 308) else None
            if location is None:
                return resp.status_code, resp.reason, url, _read_capped(resp, url, deadline, cap)
            resp.close()
        finally:
            session.close()
        if hop == MAX_REDIRECTS:
            raise RuntimeError(f"{CMD}: too many redirects (more than {MAX_REDIRECTS})")
        url = _urlparse.urljoin(url, location)
        # 303, and 301/302 after a POST, become a GET without a body; 307/308 keep both.
        if resp.status_code == 303 or (method == 'POST' and resp.status_code in (301, 302)):
            method, data = 'GET', None
            headers = {k: v for k, v in headers.items() if k.lower() != 'content-type'}
    raise RuntimeError(f"{CMD}: too many redirects (more than {MAX_REDIRECTS})")
