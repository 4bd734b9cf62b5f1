#!/bin/bash
# Runs once, when the postgres container initialises an empty data folder,
# after 10-avap-role.sql (deploy/postgres-role.sql, mounted as it is): gives
# the role avap_scripts the password from AVAP_DB_PASSWORD instead of the
# file's CHANGE-ME. psql quotes the value (:'password'), so no character of it
# reaches the SQL text.
set -euo pipefail
: "${AVAP_DB_PASSWORD:?AVAP_DB_PASSWORD is not set}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v password="$AVAP_DB_PASSWORD" <<'SQL'
ALTER ROLE avap_scripts PASSWORD :'password';
SQL
