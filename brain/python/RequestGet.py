# AVAP command `RequestGet(url V, querystring V, headers V, o_result T)`, written for the
# original AVAP Python language server's exec runtime, from docs/COMMANDS.md.
# Uses the `requests` module of the exec namespace, through http_request (_net.py: public
# destinations only unless AVAP_HTTP_ALLOW, checked at every redirect; a deadline and a
# size cap). querystring/headers: a dict, the JSON text of an object, or empty. (Compatibility with that server's scripts: text written as a
# Python dict literal, e.g. "{'postId': 1}", is accepted too.) Status >= 400 is an error.
CMD = 'RequestGet'
P = task['properties']
V = self.conector.variables


def body_value(content):
    raw = content.decode('utf-8', 'replace')
    try:
        return json.loads(raw)
    except ValueError:
        return raw


if sum(k.isdigit() for k in P) + (1 if task.get('context') else 0) < 4:
    raise RuntimeError(f"{CMD} expects 4 arguments (url, querystring, headers, o_result), got {sum(k.isdigit() for k in P)}")
url = text(arg('url', 0)).strip()
if not url:
    raise RuntimeError(f"{CMD}: the url is empty")
query, headers = pairs(arg('querystring', 1), 'querystring'), pairs(arg('headers', 2), 'headers')
status, reason, final_url, content = http_request('GET', url, query, headers, None)
if status >= 400:
    raise RuntimeError(f"{CMD}: HTTP {status} {reason or ''}".rstrip() + f" from {final_url}")
value = body_value(content)

targets = [t.strip() for t in (P.get('o_result', P.get('3')), task.get('context')) if isinstance(t, str) and t.strip()]
for t in targets:
    V[t] = value
