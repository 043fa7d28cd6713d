"""Every result has ``.response`` (the HTTP answer it came from), and its type says so:
``result.response.status`` type-checks under ``mypy --strict`` for every result class."""

from __future__ import annotations

import textwrap
from pathlib import Path

from mypy import api

import aicc_async

RESULTS = [
    "VoiceNotificationResult",
    "WriteBackResult",
    "CreateCallResult",
    "CalledInfo",
    "ApplyTokenResult",
    "LeaveMessageResult",
]


def test_every_result_class_is_public_and_has_a_response_field() -> None:
    for name in RESULTS:
        cls = getattr(aicc_async, name)
        assert "response" in {f.name for f in cls.__attrs_attrs__}, name


def test_result_response_status_type_checks_strictly(tmp_path: Path) -> None:
    lines = [f"from aicc_async import {', '.join(RESULTS)}", ""]
    for name in RESULTS:
        lines += [
            f"def status_of_{name.lower()}(r: {name}) -> int:",
            "    return r.response.status",
            "",
            f"def id_of_{name.lower()}(r: {name}) -> str | None:",
            "    return r.response.request_id",
            "",
        ]
    user_code = tmp_path / "user_code.py"
    user_code.write_text(textwrap.dedent("\n".join(lines)))
    out, err, status = api.run(
        ["--strict", "--no-incremental", "--python-version", "3.10", str(user_code)]
    )
    assert status == 0, out + err
