"""Masking secrets in what errors, logs and reprs show.

A server may echo what it was sent: the app secret, an AccessToken, a
ccmessaging-token. :class:`Redactor` replaces each known secret with ``***`` in
any text the SDK quotes, however the server wrote it:

- plainly, or JSON-escaped (``\\u0041``, ``\\/``);
- URL-encoded (``%41``, ``%2f``, ``+`` for a space);
- as HTML character references (``&#65;``, ``&#x41;``, ``&amp;``, ``&sol;``);
- cut short: any prefix of 8 characters or more (a server that shortens what it
  echoes, or an answer cut at the 64 KiB the SDK reads of it).

Each character may be written in any of these forms, mixed. Secrets shorter than
6 characters are not masked: they would mangle ordinary text.
"""

from __future__ import annotations

import functools
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
_JSON_SHORT = {"/": "/", '"': '"', "\\": "\\\\", "\n": "n", "\r": "r", "\t": "t"}


@functools.cache
def _entities() -> dict[str, list[str]]:
    """Every named HTML character reference of each single character."""
    names: dict[str, list[str]] = {}
    for name, value in html.entities.html5.items():
        if len(value) == 1:
            names.setdefault(value, []).append(name)
    return names


@functools.cache
def _char(ch: str) -> str:
    """A regex matching one character of a secret in any of the forms it may be echoed in."""
    code = ord(ch)
    units = [code] if code <= 0xFFFF else [0xD800 + ((code - 0x10000) >> 10)]
    if code > 0xFFFF:
        units.append(0xDC00 + ((code - 0x10000) & 0x3FF))
    forms = [
        re.escape(ch),
        "".join(f"\\\\u(?i:{unit:04x})" for unit in units),  # JSON \uXXXX
        "".join(f"%(?i:{byte:02x})" for byte in ch.encode()),  # URL-encoded
        f"&#0*{code};",  # HTML decimal reference
        f"&#[xX]0*(?i:{code:x});",  # HTML hexadecimal reference
    ]
    short = _JSON_SHORT.get(ch)
    if short is not None:
        forms.append(re.escape("\\" + short))
    if ch == " ":
        forms.append(r"\+")
    forms.extend("&" + re.escape(name) for name in _entities().get(ch, ()) if name[-1] == ";")
    forms.extend(
        "&" + re.escape(name) + "(?!;)" for name in _entities().get(ch, ()) if name[-1] != ";"
    )
    return "(?:" + "|".join(forms) + ")"


@functools.cache
def _char_re(ch: str) -> re.Pattern[str]:
    return re.compile(_char(ch))


class Redactor:
    """Masks the app secret, recent tokens and remembered values in texts.

    Args:
        secret: the app secret.
        live: a collection re-read on every use (the token cache's recent tokens).

    :meth:`remember` adds a value (a ccmessaging-token sent or received); the last
    64 are kept.
    """

    __slots__ = ("_heads", "_key", "_live", "_pattern", "_remembered", "_secret")

    def __init__(self, secret: str, live: Collection[str] = ()) -> None:
        self._secret = secret
        self._live = live
        self._remembered: deque[str] = deque(maxlen=64)
        self._key: tuple[str, ...] = ()
        self._pattern: re.Pattern[str] | None = None
        self._heads: list[list[str]] = []  # the secrets of each group of the pattern

    def remember(self, value: str) -> None:
        """Mask ``value`` (a ccmessaging-token) too from now on."""
        if value not in self._remembered:
            self._remembered.append(value)

    def _compiled(self, extra: Iterable[str] = ()) -> re.Pattern[str] | None:
        """One regex finding the head of every secret (its first 8 characters, or all
        of a shorter one), longest first; rebuilt only when the secrets change."""
        secrets = sorted(
            {
                s
                for s in (self._secret, *self._live, *self._remembered, *extra)
                if s and len(s) >= _MIN_SECRET
            },
            key=len,
            reverse=True,
        )
        key = tuple(secrets)
        if key != self._key:
            heads: dict[str, list[str]] = {}
            for secret in secrets:
                heads.setdefault(secret[:_MIN_PREFIX], []).append(secret)
            order = sorted(heads, key=len, reverse=True)
            self._heads = [heads[head] for head in order]
            alternatives = ("(" + "".join(map(_char, head)) + ")" for head in order)
            self._pattern = re.compile("|".join(alternatives)) if heads else None
            self._key = key
        return self._pattern

    def _sub(self, text: str, extra: Iterable[str] = ()) -> str:
        pattern = self._compiled(extra)
        if pattern is None:
            return text
        found = pattern.search(text)
        if found is None:
            return text
        out: list[str] = []
        pos = 0
        while found is not None:
            end = found.end()
            assert found.lastindex is not None
            longest = end
            for secret in self._heads[found.lastindex - 1]:
                at = end
                for ch in secret[_MIN_PREFIX:]:  # as much more of it as follows
                    more = _char_re(ch).match(text, at)
                    if more is None:
                        break
                    at = more.end()
                longest = max(longest, at)
            out.append(text[pos : found.start()])
            out.append(MASK)
            pos = longest
            found = pattern.search(text, pos)
        out.append(text[pos:])
        return "".join(out)

    def mask(self, text: str) -> str:
        """``text`` with every known secret masked, in any form it may be echoed in."""
        return self._sub(text)

    def mask_bytes(self, raw: bytes, *secrets: str) -> bytes:
        """``raw`` (an answer's body) with ``secrets`` and every known secret masked;
        ``raw`` itself when nothing was found."""
        if self._compiled(secrets) is None:
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
