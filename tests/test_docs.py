"""The README and the docs site say what is true: every Python block in them runs or
type-checks as written, the examples are shown as they are, the links lead somewhere,
and nothing a user reads speaks of how the project is run."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from mypy import api as mypy_api

import aicc_async

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = ROOT / "docs"
# Notes waiting to be folded into the guides: not part of the site (mkdocs.yml
# `exclude_docs`), so not checked here either.
INCOMING = DOCS / "_incoming"
PAGES = sorted(
    [ROOT / "README.md"] + [p for p in DOCS.rglob("*.md") if INCOMING not in p.parents],
)
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))

# A fragment says how it is checked with a comment on the line before its fence:
# `<!-- check: typecheck NAME -->` type-checks it under `mypy --strict` inside the
# scaffold NAME below (the names a fragment uses without defining them). A block
# without that comment is a whole program: it runs (a pytest test module runs under
# pytest), and is type-checked as it stands.
SCAFFOLDS: dict[str, str] = {
    "plain": "",
    "settings": """
        from aicc_async import *
        base_url: str
        app_key: str
        app_secret: str
    """,
    "client": """
        from aicc_async import *
        async def snippet(aicc: AICCClient) -> None:
    """,
    "campaign": """
        from aicc_async import *
        from aicc_async.bulk import Campaign
        async def snippet(aicc: AICCClient, campaign: Campaign) -> None:
    """,
    "outcomes": """
        import os
        from aiohttp import web
        from aicc_async import *
        from aicc_async.bulk import Campaign, CampaignRow
        async def snippet(aicc: AICCClient, app: web.Application, rows: list[CampaignRow]) -> None:
    """,
    # Stand-ins with the signatures of the Starlette / FastAPI names the fragment uses
    # (neither is a dependency of the SDK); what is checked is the receiver's side.
    "fastapi": """
        from collections.abc import Awaitable, Callable, Mapping
        from typing import Protocol
        from aicc_async import *
        class Request(Protocol):
            headers: Mapping[str, str]
            async def body(self) -> bytes: ...
        class Response:
            def __init__(self, content: bytes, status_code: int, media_type: str) -> None:
                pass
        Handler = Callable[[Request], Awaitable[Response]]
        class App(Protocol):
            def post(self, path: str) -> Callable[[Handler], Handler]: ...
        app: App
        receiver: CallbackReceiver
    """,
}
MARKER = re.compile(r"<!-- check: typecheck (\w+) -->")
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


@attrs.frozen
class Block:
    page: Path
    line: int
    code: str
    scaffold: str | None  # None: a whole program

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def is_test_module(self) -> bool:
        return "@pytest.mark.asyncio" in self.code

    def module(self) -> str:
        """The block as a module mypy can check."""
        if self.scaffold is None:
            return self.code
        scaffold = textwrap.dedent(SCAFFOLDS[self.scaffold]).lstrip("\n")
        if scaffold.rstrip().endswith(":"):
            return scaffold + textwrap.indent(self.code, "    ")
        return scaffold + self.code


def blocks() -> Iterator[Block]:
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            marker = MARKER.fullmatch(before.strip())
            line = text.count("\n", 0, match.start()) + 1
            yield Block(page, line, match.group(1), marker.group(1) if marker else None)


BLOCKS = list(blocks())
PROGRAMS = [b for b in BLOCKS if b.scaffold is None and not b.is_test_module]
TEST_MODULES = [b for b in BLOCKS if b.scaffold is None and b.is_test_module]


def block_ids(block: Block) -> str:
    return block.id


def test_the_docs_have_python_blocks_of_every_kind() -> None:
    assert len(PAGES) > 10, "the docs pages were not found"
    assert PROGRAMS
    assert TEST_MODULES
    assert {b.scaffold for b in BLOCKS} >= set(SCAFFOLDS)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.scaffold], ids=block_ids)
def test_a_fragment_names_a_known_scaffold(block: Block) -> None:
    assert block.scaffold in SCAFFOLDS


@pytest.mark.parametrize("block", PROGRAMS, ids=block_ids)
def test_a_program_in_the_docs_runs_as_pasted(block: Block, tmp_path: Path) -> None:
    assert "asyncio.run(" in block.code or "if __name__" in block.code, (
        f"{block.id} is neither a whole program nor marked `<!-- check: typecheck NAME -->`"
    )
    done = subprocess.run(
        [sys.executable, "-c", block.code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, f"{block.id}\n{done.stderr}"
    assert done.stdout.strip()
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("block", TEST_MODULES, ids=block_ids)
def test_a_test_in_the_docs_passes_in_a_users_project(
    block: Block, pytester: pytest.Pytester
) -> None:
    pytester.makepyfile(test_users_code=block.code)
    result = pytester.runpytest_subprocess("-o", "asyncio_mode=strict", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """`mypy --strict` over every block at once (one run: it is the slow part)."""
    folder = tmp_path_factory.mktemp("docs_blocks")
    files = {}
    for n, block in enumerate(BLOCKS):
        path = folder / f"block_{n}.py"
        path.write_text(block.module(), encoding="utf-8")
        files[path.name] = block.id
    out, err, _status = mypy_api.run(
        [
            "--strict",
            "--python-version=3.10",
            "--follow-imports=silent",
            "--no-error-summary",
            f"--cache-dir={folder / '.mypy_cache'}",
            *(str(folder / name) for name in files),
        ]
    )
    assert not err, err
    errors: dict[str, list[str]] = {block_id: [] for block_id in files.values()}
    for line in out.splitlines():
        name = Path(line.split(":", 1)[0]).name
        if name in files:
            errors[files[name]].append(line)
    return errors


@pytest.mark.parametrize("block", BLOCKS, ids=block_ids)
def test_a_block_in_the_docs_type_checks(block: Block, mypy_errors: dict[str, list[str]]) -> None:
    assert mypy_errors[block.id] == [], block.module()


def readme_block(section: str) -> str:
    """The first ```python block under the README's ``## section`` heading."""
    body = README.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", body, re.DOTALL)
    assert match, f"no python block under '## {section}'"
    return match.group(1)


def test_readme_quickstart_prints_a_call_serial_number() -> None:
    done = subprocess.run(
        [sys.executable, "-c", readme_block("Quickstart")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"call serial number: \d+\n", done.stdout)


def test_readme_fits_on_a_few_screens() -> None:
    assert len(README.splitlines()) <= 250


def test_readme_links_lead_to_files_in_the_source() -> None:
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    local = [t for t in targets if "://" not in t]
    assert local
    assert [t for t in local if not (ROOT / t).exists()] == []


def test_the_changelog_has_a_dated_section_for_this_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    version = aicc_async.__version__
    assert importlib.metadata.version("aicc-async") == version
    assert re.search(rf"^## \[{re.escape(version)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M)
    assert changelog.index("## [Unreleased]") < changelog.index(f"## [{version}]")


INTERNAL = re.compile(r"\bissues? #?\d+|\b(?:before|after) (?:the )?issues?\b", re.IGNORECASE)


def test_nothing_a_user_reads_speaks_of_issue_numbers() -> None:
    read = [*PAGES, ROOT / "CHANGELOG.md", *sorted((ROOT / "aicc_async").rglob("*.py"))]
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in read
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if INTERNAL.search(line)
    ]
    assert found == []


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
def test_example_is_shown_verbatim_in_the_guides(example: Path) -> None:
    shown = f"```python\n{example.read_text(encoding='utf-8')}```"
    assert any(shown in page.read_text(encoding="utf-8") for page in PAGES)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_as_a_plain_script(example: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert "Traceback" not in done.stderr
