"""Throwaway PostgreSQL databases for tests, on the server MS_TEST_POSTGRES_URL names.

Without that variable the PostgreSQL tests skip with the reason; with MS_REQUIRE_POSTGRES=1 (as
CI sets it) they fail instead, so a green run always means they ran.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql

import tools.throwaway_database


def admin_url() -> str:
    url = os.environ.get("MS_TEST_POSTGRES_URL", "")
    if not url:
        reason = "MS_TEST_POSTGRES_URL is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)"
        if os.environ.get("MS_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"the PostgreSQL tests are required here: {reason}")
        pytest.skip(reason)
    return url


@contextmanager
def throwaway_database() -> Iterator[str]:
    """A new, empty database on the test server; dropped afterwards."""
    with tools.throwaway_database.throwaway_database(admin_url(), "ms_test") as url:
        yield url


def tables(url: str) -> list[str]:
    """Every table of the store, as the database itself lists them: a table that a migration adds
    is searched without anyone having to name it here."""
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1"
        ).fetchall()
    return [str(r[0]) for r in rows]


def dump(url: str) -> bytes:
    """Every row of every table, as text: to search the store for what must not be in it."""
    with psycopg.connect(url) as connection:
        rows = [
            str(row[0])
            for table in tables(url)
            for row in connection.execute(
                sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(table))
            ).fetchall()
        ]
    return "\n".join(rows).encode()
