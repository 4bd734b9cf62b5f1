# AVAP command `ormDirect(prompt V, TargetVariable T)`, written for the original AVAP
# Python language server's exec runtime, from docs/COMMANDS.md.
# Not available there: the exec namespace (task, self.conector, self.process_step,
# json, re, requests, uuid, os, tornado, grpc) holds no database handle. The server's
# only connection is its asyncpg pool, which this namespace cannot reach and which cannot
# be used synchronously from a command; no standard-library module speaks PostgreSQL.
raise RuntimeError(
    "ormDirect: not available on this server: its command runtime has no database "
    "handle (the server's asyncpg pool is not exposed to catalog commands)"
)
