"""The configuration page's table (docs/configuration.md) is what the code reads: every setting, its
flag, its default. The README stays short and begins with the two commands."""

import re
from dataclasses import fields
from pathlib import Path

from server.config import SETTINGS, Config

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"


def test_the_configuration_table_matches_the_settings() -> None:
    rows = re.findall(r"^\| `(MS_[A-Z_]+)` \| `(--[a-z-]+)` \| ([^|]+) \|", CONFIGURATION.read_text(), re.M)
    documented = {env: (flag, default.strip()) for env, flag, default in rows}
    assert set(documented) == {s.env for s in SETTINGS}
    for setting in SETTINGS:
        flag, default = documented[setting.env]
        assert flag == setting.flag, setting.env
        if setting.default:
            assert default == f"`{setting.default}`", setting.env
        else:
            assert default.startswith("("), setting.env  # "(none)" and the like: no value


def test_the_readme_begins_with_the_two_commands() -> None:
    head = README.read_text().split("\n\n", 2)[1]
    assert "make run" in head
    assert "make test" in head


def test_the_readme_stays_short() -> None:
    # Issue 37: about 150 lines at the most; the rest is in docs/.
    assert len(README.read_text().splitlines()) <= 160


def test_every_setting_is_one_field_of_the_config() -> None:
    # Written once: the variable names the flag and the field.
    assert [s.field for s in SETTINGS] == [f.name for f in fields(Config)]
