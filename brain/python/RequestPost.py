# AVAP command `RequestPost(url V, querystring V, headers V, body V, o_result T)`, written
# for the original AVAP Python language server's exec runtime, from docs/COMMANDS.md.
# Uses the `requests` module of the exec namespace, through http_request (_net.py: public
# destinations only unless AVAP_HTTP_ALLOW, checked at every redirect; a deadline and a
# size cap). A dict/list body, or text that parses
# as JSON, is sent as JSON (Content-Type application/json unless the script sets one);
# other text as it is; empty sends none. The reply is stored whatever its status.
# (Like RequestGet, querystring/headers also accept Python dict literal text.)
CMD = 'RequestPost'
P = task['properties']
V = self.conector.variables

if sum(k.isdigit() for k in P) + (1 if task.get('context') else 0) < 5:
    raise RuntimeError(f"{CMD} expects 5 arguments (url, querystring, headers, body, o_result), got {sum(k.isdigit() for k in P)}")
url = text(arg('url', 0)).strip()
if not url:
    raise RuntimeError(f"{CMD}: the url is empty")
query, headers = pairs(arg('querystring', 1), 'querystring'), pairs(arg('headers', 2), 'headers')
body = arg('body', 3)
data, is_json = None, False
if isinstance(body, (dict, list)):
    data, is_json = json.dumps(body, separators=(',', ':'), ensure_ascii=False), True
elif body is not None and not (isinstance(body, str) and body == ''):
    data = text(body)
    try:
        json.loads(data)
        is_json = True
    except ValueError:
        pass
if is_json and not any(k.lower() == 'content-type' for k in headers):
    headers['Content-Type'] = 'application/json'
_, _, _, content = http_request('POST', url, query, headers, data.encode('utf-8') if data is not None else None)
raw = content.decode('utf-8', 'replace')
try:
    value = json.loads(raw)
except ValueError:
    value = raw

targets = [t.strip() for t in (P.get('o_result', P.get('4')), task.get('context')) if isinstance(t, str) and t.strip()]
for t in targets:
    V[t] = value
