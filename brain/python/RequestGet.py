# AVAP command `RequestGet(url V, querystring V, headers V, o_result T)`, written for the
# original AVAP Python language server's exec runtime, from docs/COMMANDS.md.
# Uses the `requests` module of the exec namespace. querystring/headers: a dict, the JSON
# text of an object, or empty. (Compatibility with that server's scripts: text written as a
# Python dict literal, e.g. "{'postId': 1}", is accepted too.) Status >= 400 is an error.
CMD = 'RequestGet'
P = task['properties']
V = self.conector.variables


def body_value(resp):
    raw = resp.content.decode('utf-8', 'replace')
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
try:
    resp = requests.get(url, params=query, headers=headers, timeout=10)
except requests.RequestException as e:
    raise RuntimeError(f"{CMD}: request to {url} failed: {e}")
if resp.status_code >= 400:
    raise RuntimeError(f"{CMD}: HTTP {resp.status_code} {resp.reason or ''}".rstrip() + f" from {resp.url}")
value = body_value(resp)

targets = [t.strip() for t in (P.get('o_result', P.get('3')), task.get('context')) if isinstance(t, str) and t.strip()]
for t in targets:
    V[t] = value
