"""server/domain/commands/writes.py: every event a command writes goes through Writer._append, the
one place that knows the call (what the store will record about who acted is added there)."""

import re
from pathlib import Path

COMMANDS = Path(__file__).resolve().parents[2] / "server" / "domain" / "commands"


def test_only_the_write_loop_appends() -> None:
    appends = {
        path.name: len(re.findall(r"_store\.append\(", path.read_text())) for path in COMMANDS.glob("*.py")
    }
    assert {name: n for name, n in appends.items() if n} == {"writes.py": 1}
