"""Masking secrets in what errors, logs and reprs show.

A server may echo what it was sent: the app secret, an AccessToken, a
ccmessaging-token. :class:`Redactor` replaces each known secret with ``***`` in
any text the SDK quotes, however the server wrote it:

- plainly, or JSON-escaped (``\\u0041``, ``\\/``);
- URL-encoded (``%41``, ``%2f``);
- as HTML character references (``&#65;``, ``&#x41;``, ``&amp;``, ``&sol;``);
- cut short: any prefix of 8 characters or more (a server that shortens what it
  echoes, or an answer cut at the 64 KiB the SDK reads of it).

Each character may be written in any of these forms, mixed: the text is read once
with every escape decoded (remembering where each character came from), the secrets
are looked for in it and in the text as written, and what they cover in the text as
written is replaced. Secrets shorter than 6 characters are not masked: they would
mangle ordinary text.
"""

from __future__ import annotations

import codecs
import html.entities
import json
import re
from collections import deque
from collections.abc import Collection, Iterable
from typing import Any

__all__ = ["MASK", "Redactor"]

MASK = "***"
_MIN_SECRET = 6  # shorter values are not masked: they would mangle ordinary text
_MIN_PREFIX = 8  # a secret's first characters that give it away when echoed cut short
_READ = 65536  # what an excerpt reads of an answer
_EXCERPT = 300  # what an excerpt shows of it
_TAGS = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")

#: Every escape a server may write a character with: a run of URL escapes, an HTML
#: character reference, a JSON \uXXXX (a surrogate pair as one) or short escape.
_ESCAPE = re.compile(
    r"(?P<url>(?:%[0-9A-Fa-f]{2})+)"
    r"|&#(?:(?P<dec>[0-9]{1,8})|[xX](?P<hex>[0-9A-Fa-f]{1,6}));"
    r"|&(?P<name>[A-Za-z][A-Za-z0-9]{1,31};?)"
    r"|\\u(?P<u1>[0-9A-Fa-f]{4})(?:\\u(?P<u2>[Dd][C-Fc-f][0-9A-Fa-f]{2}))?"
    r"|\\(?P<short>[/\"\\bfnrt])"
)
_SHORT = {"/": "/", '"': '"', "\\": "\\", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_ESCAPE_STARTS = ("%", "&", "\\")


def _char(code: int) -> str:
    try:
        return chr(code)
    except (ValueError, OverflowError):
        return "\ufffd"


def _decoded(text: str) -> tuple[str, list[int], list[int]]:
    """``text`` with every escape decoded, and where each of its characters starts and
    ends in ``text``."""
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pos = 0
    for found in _ESCAPE.finditer(text):
        start, end = found.span()
        for i in range(pos, start):
            chars.append(text[i])
            starts.append(i)
            ends.append(i + 1)
        pos = end
        kind = found.lastgroup
        if kind == "url":
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            first = start
            for at in range(start, end, 3):
                out = decoder.decode(bytes([int(text[at + 1 : at + 3], 16)]))
                for ch in out:
                    chars.append(ch)
                    starts.append(first)
                    ends.append(at + 3)
                if out:
                    first = at + 3
            for ch in decoder.decode(b"", final=True):
                chars.append(ch)
                starts.append(first)
                ends.append(end)
            continue
        if kind in ("dec", "hex"):
            value = _char(
                int(found.group("dec") or found.group("hex"), 10 if kind == "dec" else 16)
            )
        elif kind == "name":
            value = html.entities.html5.get(found.group("name"), found.group())
        elif kind in ("u1", "u2"):
            units = chr(int(found.group("u1"), 16)) + (
                chr(int(found.group("u2"), 16)) if found.group("u2") else ""
            )
            value = units.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        else:
            value = _SHORT[found.group("short")]
        for ch in value:
            chars.append(ch)
            starts.append(start)
            ends.append(end)
    for i in range(pos, len(text)):
        chars.append(text[i])
        starts.append(i)
        ends.append(i + 1)
    return "".join(chars), starts, ends


class Redactor:
    """Masks the app secret, recent tokens and remembered values in texts.

    Args:
        secret: the app secret.
        live: a collection re-read on every use (the token cache's recent tokens).

    :meth:`remember` adds a value (a ccmessaging-token sent or received); the last
    64 are kept.
    """

    __slots__ = ("_heads", "_key", "_live", "_remembered", "_secret")

    def __init__(self, secret: str, live: Collection[str] = ()) -> None:
        self._secret = secret
        self._live = live
        self._remembered: deque[str] = deque(maxlen=64)
        self._key: tuple[str, ...] = ()
        #: Each secret's head (its first 8 characters, or all of a shorter one) and
        #: the secrets starting with it.
        self._heads: dict[str, list[str]] = {}

    def remember(self, value: str) -> None:
        """Mask ``value`` (a ccmessaging-token) too from now on."""
        if value not in self._remembered:
            self._remembered.append(value)

    def _secrets(self, extra: Iterable[str] = ()) -> dict[str, list[str]]:
        """The heads of every secret (rebuilt only when the secrets change)."""
        key = tuple(
            sorted(
                {
                    s
                    for s in (self._secret, *self._live, *self._remembered, *extra)
                    if s and len(s) >= _MIN_SECRET
                }
            )
        )
        if key != self._key:
            heads: dict[str, list[str]] = {}
            for secret in key:
                heads.setdefault(secret[:_MIN_PREFIX], []).append(secret)
            self._heads = heads
            self._key = key
        return self._heads

    @staticmethod
    def _found(plain: str, heads: dict[str, list[str]]) -> list[tuple[int, int]]:
        """Where in ``plain`` a secret, or a prefix of one from its head on, stands."""
        spans = []
        for head, secrets in heads.items():
            i = plain.find(head)
            while i >= 0:
                longest = len(head)
                for secret in secrets:
                    n = len(head)
                    while n < len(secret) and plain.startswith(secret[n], i + n):
                        n += 1
                    longest = max(longest, n)
                spans.append((i, i + longest))
                i = plain.find(head, i + 1)
        return spans

    def _sub(self, text: str, extra: Iterable[str] = ()) -> str:
        heads = self._secrets(extra)
        if not heads:
            return text
        spans = self._found(text, heads)
        if any(c in text for c in _ESCAPE_STARTS):
            plain, starts, ends = _decoded(text)
            if plain != text:
                spans += [(starts[a], ends[b - 1]) for a, b in self._found(plain, heads)]
        if not spans:
            return text
        out: list[str] = []
        pos = 0
        for start, end in sorted(spans):
            if end <= pos:
                continue  # inside one masked already
            if start >= pos:
                out.append(text[pos:start])
                out.append(MASK)
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def mask(self, text: str) -> str:
        """``text`` with every known secret masked, in any form it may be echoed in."""
        return self._sub(text)

    def mask_bytes(self, raw: bytes, *secrets: str) -> bytes:
        """``raw`` (an answer's body) with ``secrets`` and every known secret masked;
        ``raw`` itself when nothing was found."""
        if not self._secrets(secrets):
            return raw
        text = raw.decode("utf-8", errors="replace")
        masked = self._sub(text, secrets)
        return raw if masked == text else masked.encode()

    def masked_body(self, raw: bytes, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` as parsed from ``raw`` with every known secret masked in it."""
        text = raw.decode("utf-8", errors="replace")
        masked = self._sub(text)
        if masked == text:
            return body
        try:
            again = json.loads(masked)
        except (ValueError, RecursionError):
            again = None
        return again if isinstance(again, dict) else {"masked": self.excerpt(raw)}

    def excerpt(self, body: bytes, *secrets: str | None) -> str:
        """A short, tag-free excerpt of a server's answer with every known secret and
        ``secrets`` masked (masked before it is cut, so no prefix shows)."""
        text = body[:_READ].decode("utf-8", errors="replace")
        text = self._sub(text, (s for s in secrets if s))
        text = _SPACE.sub(" ", _TAGS.sub(" ", text)).strip()
        return text[:_EXCERPT]
