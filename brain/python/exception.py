# AVAP command `exception(error T)` / `x = exception(error)`, written for the original
# AVAP Python language server's exec runtime, from docs/COMMANDS.md.
# Ends the protected region opened by try() and stores the message of the error caught in
# it (null when nothing failed) into `error` and into the assignment target.
# This server's parser has no handler block: the statements after exception() always run.
conector = self.conector
P = task['properties']
if conector.try_level <= 0:
    raise RuntimeError("exception: there is no open try()")
conector.try_level -= 1
message = conector.variables.get('__last_error__')
earlier = conector.except_level.pop() if conector.except_level else None
if message is None and earlier is not None:
    conector.variables['__last_error__'] = earlier   # nothing failed here: keep the earlier one
for name in (P.get('error', P.get('0')), task.get('context')):
    if isinstance(name, str) and name.strip():
        conector.variables[name.strip()] = message
