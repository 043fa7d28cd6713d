"""The settings of one :meth:`~aicc_async.bulk.campaign.run.Campaign.run`, checked
once as they are built: concurrency within the client's limits, the rate (a cap or
``"auto"``), the flags, the callbacks and the callback URL."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import attrs

from aicc_async._fanout import check_concurrency
from aicc_async.adaptive import AUTO, AdaptiveRate, AutoRate
from aicc_async.bulk.engine import Kind
from aicc_async.bulk.journal.rules import StateCounts
from aicc_async.endpoints.voice_notification import check_callback_url
from aicc_async.errors import AICCValidationError, check_flag, check_positive
from aicc_async.throttle import RateCap

if TYPE_CHECKING:
    from aicc_async.client import AICCClient

__all__ = ["RunSettings", "check_callback", "check_source"]

_AUTO_BURST = 0.1  # rate="auto": seconds' worth of starts one claim may take at once


def check_callback(name: str, value: object) -> None:
    """``AICCValidationError`` unless ``value`` is callable or None."""
    if value is not None and not callable(value):
        raise AICCValidationError(f"{name}: must be callable or None, got {value!r}", field=name)


def check_source(value: object) -> None:
    """``AICCValidationError`` unless ``value`` is a file path or None."""
    if value is not None and (not isinstance(value, (str, os.PathLike)) or not os.fspath(value)):
        raise AICCValidationError(
            f"source: must be the input's file path (str or os.PathLike) or None, got {value!r}",
            field="source",
        )


@attrs.frozen
class RunSettings:
    """The checked arguments of one run: build with :meth:`check`."""

    sender: AICCClient
    """The client the rows go through (observed by :attr:`rate_limiter` if the run
    paces itself)."""
    rate_limiter: AdaptiveRate | None
    concurrency: int
    auto_concurrency: bool
    max_throttled: float
    pacer: RateCap | AdaptiveRate | None
    retry_unknown: bool
    retry_failed: bool
    allow_repeat_numbers: bool
    callback_url: str | None
    on_progress: Callable[[StateCounts], None] | None

    @classmethod
    def check(
        cls,
        kind: Kind,
        aicc: AICCClient,
        *,
        concurrency: int | Literal["auto"] | None,
        rate: float | Literal["auto"] | AutoRate | None,
        retry_unknown: bool,
        retry_failed: bool,
        allow_repeat_numbers: bool,
        callback_url: str | None,
        on_progress: Callable[[StateCounts], None] | None,
        max_throttled: float,
    ) -> RunSettings:
        """The settings of a ``kind`` run through ``aicc``; ``AICCValidationError``
        naming the first bad argument."""
        limit = min(aicc.config.limits[kind.group], aicc.config.max_connections)
        auto_concurrency = concurrency == AUTO
        checked = check_concurrency(None if auto_concurrency else concurrency, limit, "campaign")
        if checked > limit:
            raise AICCValidationError(
                f"concurrency: {checked} is above what the client allows at once "
                f"({limit}); raise it with AICCClient(limits={{{kind.group!r}: "
                f"{checked}}}, max_connections={checked})",
                field="concurrency",
            )
        sender, pacer, limiter = cls._paced(kind, aicc, rate)
        for name, flag in (
            ("retry_unknown", retry_unknown),
            ("retry_failed", retry_failed),
            ("allow_repeat_numbers", allow_repeat_numbers),
        ):
            check_flag(name, flag)
        check_callback("on_progress", on_progress)
        if callback_url is not None:
            if kind.with_callback is None:
                raise AICCValidationError(
                    f"callback_url: a {kind.name} campaign has no release events",
                    field="callback_url",
                )
            check_callback_url(callback_url)
        return cls(
            sender=sender,
            rate_limiter=limiter,
            concurrency=checked,
            auto_concurrency=auto_concurrency,
            max_throttled=check_positive("max_throttled", max_throttled, finite=False),
            pacer=pacer,
            retry_unknown=retry_unknown,
            retry_failed=retry_failed,
            allow_repeat_numbers=allow_repeat_numbers,
            callback_url=callback_url,
            on_progress=on_progress,
        )

    @staticmethod
    def _paced(
        kind: Kind, aicc: AICCClient, rate: object
    ) -> tuple[AICCClient, RateCap | AdaptiveRate | None, AdaptiveRate | None]:
        """(the client to send through, the run's pacer, the adaptive limiter) for ``rate``."""
        if rate == AUTO or isinstance(rate, AutoRate):
            spec = AutoRate() if rate == AUTO else rate
            assert isinstance(spec, AutoRate)
            limiter = aicc.rate_limiter(kind.group)
            if limiter is not None:  # the client paces: the run only reads it
                return aicc, None, limiter
            pacer = AdaptiveRate.from_spec(spec, burst=_AUTO_BURST, clock=aicc.config.clock)
            return aicc._observed(kind.group, pacer), pacer, pacer  # tuned by the answers
        if rate is None:
            return aicc, None, None
        cap = check_positive("rate", rate, "a number of rows per second", also="'auto'")
        # Claims go in batches: allow 0.1 s worth of starts at once.
        return aicc, RateCap(cap, burst=int(cap / 10) + 1), None
