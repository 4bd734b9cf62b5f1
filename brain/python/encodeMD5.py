# AVAP command `encodeMD5(SourceVariable V, TargetVariable T)`, written for the original
# AVAP Python language server's exec runtime, from docs/COMMANDS.md.
# Stores the lowercase hex MD5 digest of the UTF-8 text of the value (42 hashes as "42").
import hashlib as _hashlib

P = task['properties']
V = self.conector.variables

source = arg('SourceVariable', 0)     # the variable when it exists, else the text itself
digest = _hashlib.md5(text(source).encode('utf-8')).hexdigest()

targets = [t.strip() for t in (P.get('TargetVariable', P.get('1')), task.get('context')) if isinstance(t, str) and t.strip()]
if not targets:
    raise RuntimeError("encodeMD5: the target must be a variable name")
for t in targets:
    V[t] = digest
