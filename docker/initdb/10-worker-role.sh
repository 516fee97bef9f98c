#!/bin/sh
# Run once by the postgres image when it creates the database (docker-entrypoint-initdb.d).
# faceid_worker: the inference worker's role. It may log in (worker_info asks the server its
# version) but owns nothing, has no table privileges and cannot create objects: the pipeline
# reads and writes no row. The password comes from POSTGRES_WORKER_PASSWORD (docker/.env).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v worker_password="$POSTGRES_WORKER_PASSWORD" <<'SQL'
CREATE ROLE faceid_worker LOGIN PASSWORD :'worker_password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
REVOKE ALL ON SCHEMA public FROM faceid_worker;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
