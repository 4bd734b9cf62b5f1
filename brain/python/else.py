# AVAP block marker `else()`, written for the original AVAP Python language server's
# exec runtime, from docs/COMMANDS.md. It is syntax, not an action: the server's parser
# turns it into the false branch of the enclosing if, which the `if` entry runs.
pass
