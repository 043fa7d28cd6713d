"""The OpenTelemetry recipe of the docs: aiohttp trace configs given to the client
(``trace_configs=[create_trace_config()]`` from opentelemetry-instrumentation-aiohttp-
client) give one client span per HTTP request, token request included, with no
credential in any attribute; the instrumentor's global patch works as well.
Spans go to the in-memory exporter; AICC is FakeAICC on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest
from opentelemetry.instrumentation.aiohttp_client import (
    AioHttpClientInstrumentor,
    create_trace_config,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from aicc_async import AICCValidationError
from aicc_async.testing import FakeAICC


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _paths(exporter: InMemorySpanExporter) -> list[tuple[str, int]]:
    found = []
    for span in exporter.get_finished_spans():
        assert span.kind is SpanKind.CLIENT
        attributes = dict(span.attributes or {})
        url = str(attributes.get("url.full") or attributes.get("http.url"))
        status = attributes.get("http.response.status_code", attributes.get("http.status_code"))
        found.append((url.split("/", 3)[3], int(status)))  # type: ignore[arg-type]
    return found


@pytest.mark.asyncio
async def test_trace_configs_given_to_the_client_trace_every_request(
    fake_aicc: FakeAICC, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    async with fake_aicc.client(
        trace_configs=[create_trace_config(tracer_provider=provider)]
    ) as aicc:
        await aicc.voice_notification.create("88880000", "$Hi$")
        await aicc.voice_notification.create("88880001", "$Hi$")
    assert _paths(exporter) == [
        ("apigovernance/api/oauth/tokenByAkSk", 200),
        ("apiaccess/rest/voiceNotification/v1/createVoiceNotification", 200),
        ("apiaccess/rest/voiceNotification/v1/createVoiceNotification", 200),
    ]
    for span in exporter.get_finished_spans():
        text = repr(dict(span.attributes or {})) + span.name
        assert fake_aicc.app_secret not in text


@pytest.mark.asyncio
async def test_the_instrumentor_traces_the_clients_own_session(
    fake_aicc: FakeAICC, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    instrumentor = AioHttpClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        async with fake_aicc.client() as aicc:
            await aicc.voice_notification.create("88880000", "$Hi$")
    finally:
        instrumentor.uninstrument()
    assert [path for path, _ in _paths(exporter)] == [
        "apigovernance/api/oauth/tokenByAkSk",
        "apiaccess/rest/voiceNotification/v1/createVoiceNotification",
    ]


@pytest.mark.asyncio
async def test_trace_configs_are_checked(fake_aicc: FakeAICC) -> None:
    with pytest.raises(AICCValidationError, match="trace_configs"):
        fake_aicc.client(trace_configs=["not a trace config"])
    async with aiohttp.ClientSession() as session:
        with pytest.raises(AICCValidationError, match="trace_configs"):
            fake_aicc.client(session=session, trace_configs=[aiohttp.TraceConfig()])
