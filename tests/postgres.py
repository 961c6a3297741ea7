"""Throwaway PostgreSQL databases for tests, on the server MS_TEST_POSTGRES_URL names.

Without that variable the PostgreSQL tests skip with the reason; with MS_REQUIRE_POSTGRES=1 (as
CI sets it) they fail instead, so a green run always means they ran.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

import tools.throwaway_database

TABLES = ("events", "orgs", "users", "members", "tokens", "schema_migrations")


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


def dump(url: str) -> bytes:
    """Every row of every table, as text: to search the store for what must not be in it."""
    with psycopg.connect(url) as connection:
        rows = [
            str(row[0])
            for table in TABLES
            for row in connection.execute(f"SELECT t::text FROM {table} t").fetchall()  # noqa: S608 - fixed names
        ]
    return "\n".join(rows).encode()
