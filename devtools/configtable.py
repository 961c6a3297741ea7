"""Writes the configuration page's table from the settings table (server/config.py): each setting's
variable, flag, default and meaning, so that the page cannot drift from what the code reads. The
table sits between two markers in docs/configuration.md; `make docs-config` rewrites it, and
tests/test_generated.py fails when it is out of step."""

import sys
from pathlib import Path

from server.config import SETTINGS, Setting

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "configuration.md"
BEGIN = "<!-- config-table: made by `make docs-config` from server/config.py; do not edit -->"
END = "<!-- /config-table -->"


def row(setting: Setting) -> str:
    default = f"`{setting.default}`" if setting.default else "(none)"
    meaning = setting.meaning.replace("|", "\\|")
    return f"| `{setting.env}` | `{setting.flag}` | {default} | {meaning} |"


def table() -> str:
    rows = ["| variable | flag | default | meaning |", "| --- | --- | --- | --- |"]
    return "\n".join(rows + [row(s) for s in SETTINGS])


def page_with_table(page: str) -> str:
    head, begin, rest = page.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise SystemExit(f"{PAGE.relative_to(ROOT)} lacks the markers {BEGIN} ... {END}")
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def generate() -> str:
    return page_with_table(PAGE.read_text())


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else PAGE
    target.write_text(generate())
