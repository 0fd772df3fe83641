-- ibex control schema, version 4: a db may be a target that is not PostgreSQL (MariaDB or
-- MySQL, SQLite, Redis, a directory of SQL files). Its settings are in conn, as a
-- PostgreSQL db's libpq keywords are; never a password.
ALTER TABLE ibex.db ADD COLUMN dbtype text NOT NULL DEFAULT 'postgres'
    CHECK (dbtype IN ('postgres', 'mariadb', 'mysql', 'sqlite', 'redis', 'flatfile'));
