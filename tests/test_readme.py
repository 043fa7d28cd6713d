"""The README's examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def python_block(section: str) -> str:
    """The first ```python block under the ``## section`` heading."""
    body = README.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", body, re.DOTALL)
    assert match, f"no python block under '## {section}'"
    return match.group(1)


def test_quickstart_runs_as_pasted() -> None:
    done = subprocess.run(
        [sys.executable, "-c", python_block("Quickstart")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"call serial number: \d+\n", done.stdout)


def test_fake_aicc_fixture_example_passes_in_a_users_project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_users_code=python_block("Testing your own code"))
    result = pytester.runpytest_subprocess("-o", "asyncio_mode=strict", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
