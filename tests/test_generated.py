"""generated/ is committed: it must be exactly what `make proto` makes from proto/ now."""

import filecmp
from pathlib import Path

from devtools import apitable, configtable, genopenapi
from devtools.genproto import generate

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_is_in_step_with_the_protos(tmp_path: Path) -> None:
    generate(tmp_path)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(
        p.relative_to(ROOT / "generated")
        for p in (ROOT / "generated").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.name != "openapi.json"  # checked below
    )
    assert fresh == committed, "run `make proto`"
    changed = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, ROOT / "generated" / p, shallow=False)]
    assert not changed, f"out of step with proto/: {changed}; run `make proto`"


def test_the_openapi_document_is_in_step_with_the_descriptor_set() -> None:
    assert (ROOT / "generated" / "openapi.json").read_text() == genopenapi.generate(), "run `make openapi`"


def test_the_api_references_table_is_in_step_with_the_protos() -> None:
    assert (ROOT / "docs" / "api.md").read_text() == apitable.generate(), "run `make proto`"


def test_the_configuration_pages_table_is_in_step_with_the_settings() -> None:
    assert (ROOT / "docs" / "configuration.md").read_text() == configtable.generate(), (
        "run `make docs-config`"
    )
