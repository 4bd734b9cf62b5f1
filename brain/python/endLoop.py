# AVAP block marker `endLoop()`, written for the original AVAP Python language server's
# exec runtime, from docs/COMMANDS.md. It is syntax, not an action: the server's parser
# closes the enclosing startLoop block with it, so this entry is never needed to run.
pass
