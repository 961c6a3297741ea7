"""Throwaway PostgreSQL databases for tests, on the server MS_TEST_POSTGRES_URL names.

Without that variable they use the server at 127.0.0.1:5432 when one answers there (as on this
kind of machine); without either, the PostgreSQL tests skip, summed up in one line at the end of
the run; with MS_REQUIRE_POSTGRES=1 (as CI sets it) they fail instead, so a green run always means
they ran.
"""

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql

import devtools.throwaway_database

# Where `make test` finds PostgreSQL when MS_TEST_POSTGRES_URL is not set: the server this kind of
# machine runs (and .ci/run starts), if it answers.
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SKIP_REASON = (
    "PostgreSQL tests: no server at MS_TEST_POSTGRES_URL nor at 127.0.0.1:5432"
    " (set MS_TEST_POSTGRES_URL=postgresql://user@host:port/db to run them)"
)


@functools.cache
def _found_url() -> str:
    url = os.environ.get("MS_TEST_POSTGRES_URL", "")
    if url:
        return url
    try:
        psycopg.connect(DEFAULT_URL, connect_timeout=1).close()
    except psycopg.Error:
        return ""
    return DEFAULT_URL


def admin_url() -> str:
    url = _found_url()
    if not url:
        if os.environ.get("MS_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"the PostgreSQL tests are required here: {SKIP_REASON}")
        pytest.skip(SKIP_REASON)
    return url


@contextmanager
def throwaway_database(options: str = "") -> Iterator[str]:
    """A new, empty database on the test server (made with CREATE DATABASE's options); dropped
    afterwards."""
    with devtools.throwaway_database.throwaway_database(admin_url(), "ms_test", options) as url:
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
