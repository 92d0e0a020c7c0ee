"""Bounded, redacted text: what events, status messages and log lines copy."""

from __future__ import annotations

import pytest

from raykube.text import bounded, redact, safe


def test_short_text_is_kept_and_long_text_is_cut_with_a_marker() -> None:
    assert bounded("hello", 5) == "hello"
    text = "start " + "x" * 100_000 + " end"
    cut = bounded(text, 1024)
    assert len(cut) <= 1024
    # The start names what failed, the end of a traceback says why: both stay.
    assert cut.startswith("start xxx") and cut.endswith("xxx end")
    head, marker, tail = cut.partition(" …[truncated ")
    cut_chars = len(text) - len(head) - len(tail.split("chars]… ", 1)[1])
    assert marker and tail.startswith(f"{cut_chars} chars]… ")


@pytest.mark.parametrize("limit", [0, 1, 5, 20, 21, 30, 100])
def test_never_longer_than_the_limit(limit: int) -> None:
    assert len(bounded("y" * 1000, limit)) <= limit


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ("https://user:secret@host/x.zip", "https://***@host/x.zip"),
        ("s3://AKIA:secret@bucket/key", "s3://***@bucket/key"),
        ("git+https://tok:secret@github.com/o/r.git", "git+https://***@github.com/o/r.git"),
        ("https://u:p@ss-secret@host/x", "https://***@host/x"),
        (
            "working_dir: 'https://host/x.zip?token=secret&v=2'",
            "working_dir: 'https://host/x.zip?token=***&v=2'",
        ),
        (
            "https://b.s3.amazonaws.com/x.zip?X-Amz-Signature=secret&X-Amz-Credential=secret",
            "https://b.s3.amazonaws.com/x.zip?X-Amz-Signature=***&X-Amz-Credential=***",
        ),
        ("https://host/x.zip?api_key=secret#frag", "https://host/x.zip?api_key=***#frag"),
        # Nothing that looks like a credential is touched.
        ("https://host/path?v=2&page=3", "https://host/path?v=2&page=3"),
        (
            "mail alice@example.com about https://host/x",
            "mail alice@example.com about https://host/x",
        ),
        ("ValueError: bad value at line 3", "ValueError: bad value at line 3"),
    ],
)
def test_credentials_in_urls_are_masked(text: str, wanted: str) -> None:
    assert redact(text) == wanted


def test_safe_redacts_before_cutting() -> None:
    text = "failed to fetch https://user:secret@host/x.zip: " + "e" * 10_000
    out = safe(text, 200)
    assert "secret" not in out and len(out) <= 200
