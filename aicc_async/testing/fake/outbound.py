"""Outbound campaigns: the ``midresult`` write-back (no X-APP-Key check)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from aicc_async.testing.fake._common import Answer, Exchange, is_int, is_text

__all__ = ["MIDRESULT", "MIDRESULT_PATH", "Outbound"]

MIDRESULT: Final = "midresult"
MIDRESULT_PATH: Final = "/rest/isales/v1/openapi/obs/business/push/midresult"

_BAD_PARAMS: Final[Mapping[str, Any]] = {"result": 1, "resultDesc": "Parameter error"}
_OPTIONAL_STRINGS: Final = (
    "status",
    "phoneNumber",
    "failCode",
    "asrResult",
    "fetchTime",
    "writeStartTime",
    "endCallTime",
    "callId",
)


def _midresult_valid(body: Mapping[str, Any]) -> bool:
    if not (is_int(body.get("subCCNo")) and is_int(body.get("vdnId"))):
        return False
    if not (is_text(body.get("uniqueId")) and is_text(body.get("serviceId"))):
        return False
    if "deviceType" in body and not is_int(body["deviceType"]):
        return False
    return all(is_text(body[name], 0) for name in _OPTIONAL_STRINGS if name in body)


class Outbound:
    """Takes write-backs; ``write_backs`` counts them per ``uniqueId``."""

    def __init__(self) -> None:
        self.write_backs: Counter[str] = Counter()

    def midresult(self, ex: Exchange, *, result_as_string: bool) -> Answer:
        """Answer a midresult whose token and body object were accepted.

        ``result_as_string``: answer ``{"result": "0"}`` instead of ``{"result": 0}``.
        """
        body = ex.body
        if not _midresult_valid(body):
            return Answer(web.json_response(dict(_BAD_PARAMS)))
        self.write_backs[body["uniqueId"]] += 1
        return Answer(web.json_response({"result": "0" if result_as_string else 0}), processed=True)
