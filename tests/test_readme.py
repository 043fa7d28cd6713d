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


EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


def test_there_is_an_example_per_interface_and_for_campaigns() -> None:
    names = {p.stem for p in EXAMPLES}
    assert names == {
        "voice_notification",
        "write_back",
        "create_call",
        "called_info",
        "leave_message",
        "campaign",
    }


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_is_shown_verbatim_in_the_readme(example: Path) -> None:
    assert f"```python\n{example.read_text(encoding='utf-8')}```" in README


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_as_a_plain_script(example: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert "Traceback" not in done.stderr
