# AVAP command `try()`, written for the original AVAP Python language server's exec
# runtime, from docs/COMMANDS.md.
# Opens a protected region: while try_level > 0 the server records a failing statement's
# message in variables['__last_error__'] and goes on. An earlier message is set aside so
# that exception() reports only errors of this region.
conector = self.conector
conector.except_level.append(conector.variables.pop('__last_error__', None))
conector.try_level += 1
