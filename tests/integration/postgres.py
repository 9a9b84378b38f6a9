"""Fresh, uniquely named databases on the local PostgreSQL, for test services.

The server is the one running on this machine (127.0.0.1:5432, user ``postgres``, trust
auth). Every database a test creates is dropped again, even with connections still open.
"""

from __future__ import annotations

import uuid

POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def run_sql(statement: str) -> None:
    """Run one statement on the ``postgres`` database, outside a transaction (CREATE/DROP DATABASE)."""
    import psycopg2

    try:
        connection = psycopg2.connect(dbname="postgres", **POSTGRES)
    except psycopg2.OperationalError as err:
        raise RuntimeError(
            f"cannot reach PostgreSQL as {POSTGRES} ({err}); the test services need a local "
            "PostgreSQL with trust auth for user 'postgres' on 127.0.0.1:5432"
        ) from err
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


class FreshDatabase:
    """``create()`` a database named ``<prefix>_<random>``; ``drop()`` it (idempotent)."""

    def __init__(self, prefix: str):
        self.name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.created = False

    def url(self, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{POSTGRES['user']}@{POSTGRES['host']}:{POSTGRES['port']}/{self.name}"

    def create(self) -> None:
        run_sql(f'CREATE DATABASE "{self.name}"')
        self.created = True

    def drop(self) -> None:
        if self.created:
            run_sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.created = False
