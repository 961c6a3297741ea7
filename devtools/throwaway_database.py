"""A new, empty PostgreSQL database on a server, dropped afterwards (tests and benchmarks)."""

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg


@contextmanager
def throwaway_database(server_url: str, prefix: str, options: str = "") -> Iterator[str]:
    """The URL of a new database on the server server_url names, made with CREATE DATABASE's
    options (a constant of the caller's: a collation, say); dropped on exit, whatever is still
    connected to it."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" {options}'.strip())
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
