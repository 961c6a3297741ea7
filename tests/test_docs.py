"""The documentation site builds in strict mode (mkdocs.yml): a broken link, a missing anchor, a
page left out of the navigation or an include that is not there fails here, and so in CI."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    pages = {p.parent.name for p in (tmp_path / "site").glob("*/index.html")}
    assert {p.stem for p in (ROOT / "docs").glob("*.md")} - {"index"} <= pages


def test_security_and_benchmarks_are_shown_whole() -> None:
    # They stay at the top of the repository, where people look for them; the site includes them.
    for name in ("SECURITY.md", "BENCHMARKS.md"):
        assert f'--8<-- "{name}"' in (ROOT / "docs" / name.lower()).read_text()


def test_images_are_markdown_so_that_the_build_checks_them() -> None:
    # MkDocs resolves and checks a Markdown image's path; a raw <img src> it passes through
    # unchecked, and a path relative to the page's file breaks on the site's page URL.
    for page in (ROOT / "docs").glob("*.md"):
        assert "<img" not in page.read_text(), page.name
