"""The mutation table: each known break of the production code, applied to a copy of this working
tree, and the tests that must catch it, run there.

    python -m devtools.mutations                      # every break, seeds 1-5, SQLite
    python -m devtools.mutations --seeds 7,8 --only policy-write --store postgres

For each break: the fixed tests named for it run once, and the property test
(tests/test_authorization_properties.py) runs once per seed, each with an empty example database,
so no run replays what another found. A run counts as catching the break when it fails on a
disagreement, not when it fails on its floors. The table (break, file, caught by, runs caught,
time) is printed as Markdown.

The working tree this runs from is never written: the copy holds what `git ls-files` lists (tracked
files and untracked ones that are not ignored), as they are now, in a temporary directory that is
removed afterwards.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROPERTY_TEST = "tests/test_authorization_properties.py"
FLOOR_FAILURE = "fewer times than their floor"


@dataclass(frozen=True)
class Break:
    name: str
    file: str
    old: str  # the text replaced: it must occur exactly once
    new: str
    fixed_tests: tuple[str, ...]  # pytest node ids or files that must fail on it


BREAKS = (
    Break(
        "policy-write",
        "server/domain/permissions.py",
        "ORG_USER_MANAGER: frozenset({USER_READ, USER_WRITE}),",
        "ORG_USER_MANAGER: frozenset({USER_READ, USER_WRITE, POLICY_WRITE}),",
        (
            "tests/test_authorization_model.py",
            f"{PROPERTY_TEST}::test_found_escalations_stay_refused",
        ),
    ),
    Break(
        "covers-caller-org",
        "server/domain/permissions.py",
        "if not all(self.has(permission, org_id) for permission in ROLE_PERMISSIONS[role]):",
        "if not all(self.has(permission, self.org_id) for permission in ROLE_PERMISSIONS[role]):",
        (f"{PROPERTY_TEST}::test_found_escalations_stay_refused",),
    ),
    Break(
        "cross-org-read",
        "server/domain/queries.py",
        # _user_of's organisation check (the only such line of queries.py)
        "if user is None or user.org_id != ctx.org_id:",
        "if user is None:",
        ("tests/test_organisation_boundaries.py",),
    ),
    Break(
        "token-outlives-secret",
        "server/domain/access.py",
        "if token.secret_id is not None and (",
        "if False and token.secret_id is not None and (",
        ("tests/test_credential_liveness.py",),
    ),
    Break(
        "list-users-caller-org",
        "server/domain/queries.py",
        "users = await self._store.users_page(\n            ctx.org_id,",
        "users = await self._store.users_page(\n            ctx.principal.org_id,",
        (f"{PROPERTY_TEST}::test_found_escalations_stay_refused", "tests/test_list_users.py"),
    ),
)


@dataclass
class Run:
    failed: bool
    caught: bool  # failed on a disagreement, not on a floor
    seconds: float


@contextmanager
def copy_of_tree() -> Iterator[Path]:
    """The working tree as it is now (tracked and untracked files that are not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    with tempfile.TemporaryDirectory(prefix="ms-mutation-") as folder:
        copy = Path(folder) / "tree"
        for raw in filter(None, listed):
            source = ROOT / os.fsdecode(raw)
            if source.is_file():
                target = copy / os.fsdecode(raw)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        yield copy


def apply(tree: Path, br: Break) -> None:
    path = tree / br.file
    text = path.read_text()
    if text.count(br.old) != 1:
        raise SystemExit(f"{br.name}: {br.file} must contain the replaced text exactly once")
    path.write_text(text.replace(br.old, br.new))


def pytest(tree: Path, args: list[str], log: Path) -> Run:
    started = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(  # noqa: S603 - this interpreter, pytest, on the copy
            [sys.executable, "-m", "pytest", "-q", "-x", "-n", "0", "-p", "no:cacheprovider", *args],
            cwd=tree,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    failed = result.returncode != 0
    caught = failed and FLOOR_FAILURE not in log.read_text(errors="replace")
    return Run(failed, caught, time.monotonic() - started)


def run_break(br: Break | None, seeds: list[int], store: str, logs: Path) -> tuple[Run, list[Run]]:
    name = br.name if br else "none"
    with copy_of_tree() as tree:
        if br is not None:
            apply(tree, br)
        fixed = pytest(tree, list(br.fixed_tests), logs / f"{name}-fixed.log") if br else Run(False, False, 0)
        runs = []
        for seed in seeds:
            # An empty example database for every run: none replays what an earlier one found.
            shutil.rmtree(tree / "tests" / ".hypothesis", ignore_errors=True)
            args = [
                f"{PROPERTY_TEST}::test_calls_follow_the_rules_and_never_escalate[{store}]",
                f"--hypothesis-seed={seed}",
            ]
            runs.append(pytest(tree, args, logs / f"{name}-seed{seed}.log"))
            outcome = "caught" if runs[-1].caught else "not caught"
            print(f"  {name} seed {seed}: {outcome} in {runs[-1].seconds:.0f} s", flush=True)
    return fixed, runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="1,2,3,4,5", help="hypothesis seeds, comma-separated")
    parser.add_argument("--store", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--only", action="append", help="a break by name (repeatable); default: all")
    parser.add_argument("--baseline", action="store_true", help="also run the unbroken copy (must pass)")
    parser.add_argument("--logs", type=Path, help="keep each run's output here (default: a temporary dir)")
    options = parser.parse_args()
    seeds = [int(s) for s in options.seeds.split(",")]
    chosen = [b for b in BREAKS if not options.only or b.name in options.only]
    with tempfile.TemporaryDirectory(prefix="ms-mutation-logs-") as scratch:
        logs = options.logs or Path(scratch)
        logs.mkdir(parents=True, exist_ok=True)
        rows = []
        if options.baseline:
            _, runs = run_break(None, seeds, options.store, logs)
            passed = sum(not r.failed for r in runs)
            print(f"baseline: passed {passed}/{len(runs)}, {max(r.seconds for r in runs):.0f} s at most")
        for br in chosen:
            fixed, runs = run_break(br, seeds, options.store, logs)
            caught = sum(r.caught for r in runs)
            times = ", ".join(f"{r.seconds:.0f}" for r in runs)
            fixed_tests = ", ".join(t.removeprefix("tests/") for t in br.fixed_tests)
            verdict = "fails" if fixed.caught else "PASSES"
            rows.append(
                f"| {br.name} | `{br.file}` | {fixed_tests}: {verdict} ({fixed.seconds:.0f} s) "
                f"| {caught}/{len(runs)} | {times} |"
            )
        print(f"\nstore {options.store}, seeds {options.seeds}")
        print("| break | file | fixed tests | property test: runs caught | seconds per run |")
        print("| --- | --- | --- | ---: | --- |")
        print("\n".join(rows))


if __name__ == "__main__":
    main()
