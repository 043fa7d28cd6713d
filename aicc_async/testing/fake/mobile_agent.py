"""Mobile agent: createcall (a call task) and getCalledInfo (who a number reaches)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any, Final

import attrs
from aiohttp import web

from aicc_async.testing.fake._common import Answer, Exchange, is_int, is_text

__all__ = ["CALLED_INFO", "CALLED_INFO_PATH", "CREATE_CALL", "CREATE_CALL_PATH", "CalledParty"]

CREATE_CALL: Final = "createcall"
CREATE_CALL_PATH: Final = "/apiaccess/ccmessaging/v1/mobileagent/createcall"
CALLED_INFO: Final = "getCalledInfo"
CALLED_INFO_PATH: Final = "/apiaccess/CC-Management/v1/mobileAgent/getCalledInfo"

_FIRST_ACCESS_CODE: Final = 179080024600000
_SIP_SERVICE_ADDRESS: Final = "127.0.0.1:5063"

_CREATE_CALL_BAD_PARAMS: Final[Mapping[str, str]] = {
    "resultCode": "30010000003",
    "resultDesc": "Input parameter verification failed",
}
_CALLED_INFO_MSGS: Final[Mapping[str, str]] = {
    "0": "success",
    "3": "Parameter error",
    "4": "The called party ID cannot be obtained",
    "5": "Called is not configured",
}


@attrs.frozen
class CalledParty:
    """What getCalledInfo answers for one configured called number (see ``called_parties``).

    ``dev_type`` is 0 for a skill queue, 1 for a number; ``skill_id`` and
    ``skill_name`` are left out of the answer when None.
    """

    dev_type: int
    called: str
    skill_id: int | None = None
    skill_name: str | None = None


def _create_call_valid(body: Mapping[str, Any]) -> bool:
    if not (is_text(body.get("called"), 1, 32) and is_text(body.get("callerPresent"), 1, 32)):
        return False
    return "callData" not in body or is_text(body["callData"], 0, 1024)


def _called_info_number(value: object) -> str | None:
    """``value`` (a string or a JSON integer) as 1..32 characters, or None if invalid."""
    text = str(value) if is_int(value) else value
    return text if isinstance(text, str) and 1 <= len(text) <= 32 else None


def _called_info_answer(code: str, result: Mapping[str, Any] | None = None) -> web.Response:
    answer: dict[str, Any] = {"retCode": code, "retMsg": _CALLED_INFO_MSGS[code]}
    if result is not None:
        answer["result"] = dict(result)
    return web.json_response(answer)


class MobileAgent:
    """Creates call tasks (``call_tasks`` counts them per called number)."""

    def __init__(self, serials: Iterator[int]) -> None:
        self._serials = serials
        self._access_code = _FIRST_ACCESS_CODE
        self.call_tasks: Counter[str] = Counter()

    def create_call(self, ex: Exchange, *, omit_call_serial_no: bool) -> Answer:
        """Answer a createcall whose token, app key and body object were accepted."""
        body = ex.body
        if not _create_call_valid(body):
            return Answer(web.json_response(dict(_CREATE_CALL_BAD_PARAMS)))
        serial = next(self._serials)
        self._access_code += 1
        self.call_tasks[body["called"]] += 1
        data: dict[str, str] = {}
        if not omit_call_serial_no:
            data["callSerialNo"] = str(serial)
        data["sipServiceAddress"] = _SIP_SERVICE_ADDRESS
        data["accesscode"] = str(self._access_code)
        answer = {"resultCode": "0", "resultDesc": "Success", "resultData": data}
        return Answer(web.json_response(answer), processed=True)

    @staticmethod
    def called_info(
        ex: Exchange, parties: Mapping[str, CalledParty], unobtainable: set[str]
    ) -> Answer:
        """Answer a getCalledInfo whose token, app key and body object were accepted.

        ``unobtainable`` numbers answer retCode 4 (checked first), numbers not in
        ``parties`` retCode 5.
        """
        called = _called_info_number(ex.body.get("called"))
        if called is None or _called_info_number(ex.body.get("caller")) is None:
            return Answer(_called_info_answer("3"))
        if called in unobtainable:
            return Answer(_called_info_answer("4"))
        party = parties.get(called)
        if party is None:
            return Answer(_called_info_answer("5"))
        result: dict[str, Any] = {"devType": party.dev_type, "called": party.called}
        if party.skill_id is not None:
            result["skillId"] = party.skill_id
        if party.skill_name is not None:
            result["skillName"] = party.skill_name
        return Answer(_called_info_answer("0", result), processed=True)
