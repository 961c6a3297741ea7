"""Tests of the commands (server/domain/commands/), one file per command module, as tables: the
events the store holds, a command, and the events it appends or the error it raises."""

import pytest

# table.py's asserts compare the events: pytest shows both sides only in modules it rewrites.
pytest.register_assert_rewrite("tests.commands.table")
