-- A least-privileged PostgreSQL role for avap-host's `db` capability.
--
-- Run as a superuser (psql -v ON_ERROR_STOP=1 -f deploy/postgres-role.sql),
-- after changing the names and the password below. Then start the host with
--   AVAP_DB_URL=postgres://avap_scripts:CHANGE-ME@db.internal:5432/app?options=-c%20search_path%3Davap
-- The host inspects the role on every connection and refuses to start with a
-- role that can reach the server's files or programs; this one passes.
--
-- What the role can do: log in to this one database, and create, read and
-- change tables, views and the like in its own schema `avap` (the host
-- refuses CREATE FUNCTION and CREATE PROCEDURE from scripts: create the
-- functions scripts may call yourself, as this role or another). What it cannot: be a superuser,
-- create roles or databases, read or write server files (pg_read_file,
-- lo_import, COPY ... TO/FROM a file or program), use the public schema, or
-- connect to other databases of the cluster.

CREATE ROLE avap_scripts LOGIN PASSWORD 'CHANGE-ME'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    CONNECTION LIMIT 64;

-- Only this database (PUBLIC may connect to every database by default).
REVOKE CONNECT ON DATABASE app FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE app TO avap_scripts;

-- A schema of its own; nothing in public.
CREATE SCHEMA avap AUTHORIZATION avap_scripts;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON SCHEMA public FROM avap_scripts;

-- Tables that scripts should read but not own belong to another role;
-- grant exactly what the endpoints need, for example:
--   GRANT USAGE ON SCHEMA shop TO avap_scripts;
--   GRANT SELECT ON shop.products TO avap_scripts;

-- Every execution shares this role, so by default one script could see the
-- statements other executions are running (pg_stat_activity) and cancel
-- them. The host refuses those names in a statement, but a function a script
-- creates could still call them; take them away from PUBLIC to close that
-- (this affects every non-superuser role of the cluster, which is usually
-- what you want):
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_terminate_backend(integer, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_cancel_backend(integer) FROM PUBLIC;

-- Defaults for the role's sessions. The host refuses SET, set_config and
-- pg_settings in a statement and resets every session before reuse; these
-- are the values a session starts from, and what a function you make for
-- scripts runs with unless it sets its own. (Any role may ALTER ROLE itself
-- SET ...; the host refuses ALTER ROLE and functions created by scripts.)
ALTER ROLE avap_scripts SET statement_timeout = '5s';
ALTER ROLE avap_scripts SET idle_in_transaction_session_timeout = '5s';
ALTER ROLE avap_scripts SET work_mem = '8MB';
ALTER ROLE avap_scripts SET temp_file_limit = '64MB';
