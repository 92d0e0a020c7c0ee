"""Text that leaves the operator (events, status messages, log lines), made safe
to copy: of a bounded length, and without the credentials that users put in
URLs (a ``working_dir`` of ``https://user:token@host/app.zip``).

A leaf: standard library only, pure, used by every layer.
"""

from __future__ import annotations

import re

MASK = "***"

#: ``scheme://userinfo@``: everything between the scheme and the last ``@``
#: before the host ends (a password may hold an unescaped ``@``).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s?#\"'<>]*@")
#: A query parameter whose name says it carries a secret (``token``,
#: ``X-Amz-Signature``, ``sig``, ``api_key``, ...): its value goes.
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&][^=&\s#\"']*(?:token|secret|passw(?:or)?d|pwd|key|sig|credential|auth)"
    r"[^=&\s#\"']*=)[^&\s#\"'<>]*",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with the userinfo of every URL, and the values of token-like
    query parameters, replaced by ``***``."""
    text = _USERINFO.sub(lambda m: m.group("scheme") + MASK + "@", text)
    return _SECRET_PARAM.sub(lambda m: m.group("name") + MASK, text)


def _marker(cut: int) -> str:
    return f" …[truncated {cut} chars]… "


def bounded(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its start and its end
    around a marker saying how much was cut; never longer than ``limit``. Both
    ends stay: the start of a message names what failed, the end of a
    traceback says why."""
    if len(text) <= limit:
        return text
    # The marker's own length depends on the number it shows: size it for the
    # most that could be cut, then cut exactly what makes room for it.
    keep = max(0, limit - len(_marker(len(text))))
    tail = keep // 3
    head = keep - tail
    out = text[:head] + _marker(len(text) - keep) + (text[-tail:] if tail else "")
    return out[:limit]


def safe(text: str, limit: int) -> str:
    """Redacted, then bounded: what every message leaving the operator gets."""
    return bounded(redact(text), limit)
