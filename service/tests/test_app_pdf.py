"""The hand-written PDF is structurally valid: header, objects, xref offsets, trailer, EOF."""

from __future__ import annotations

import re

from app.pdf import MAX_LINES, render_pdf


def test_starts_and_ends_like_a_pdf() -> None:
    data = render_pdf(["Daily report PTT 2026-11-23"])
    assert data.startswith(b"%PDF-1.4\n")
    assert data.endswith(b"%%EOF")


def test_xref_offsets_point_at_their_objects() -> None:
    data = render_pdf(["one", "two"])
    startxref = int(re.search(rb"startxref\n(\d+)\n%%EOF$", data).group(1))
    assert data[startxref:].startswith(b"xref\n0 6\n")
    entries = data[startxref:].split(b"\n")[2:8]
    assert entries[0] == b"0000000000 65535 f "
    for number, entry in enumerate(entries[1:], start=1):
        assert len(entry) + 1 == 20  # every entry is 20 bytes with its newline
        offset = int(entry[:10])
        assert data[offset:].startswith(b"%d 0 obj\n" % number)


def test_stream_length_is_exact() -> None:
    data = render_pdf(["a", "b", "c"])
    match = re.search(rb"<< /Length (\d+) >>\nstream\n", data)
    start = match.end()
    length = int(match.group(1))
    assert data[start + length :].startswith(b"\nendstream")


def test_text_is_escaped_and_latin1() -> None:
    data = render_pdf(["a (b) c\\d", "ไทย"])
    assert b"(a \\(b\\) c\\\\d) Tj" in data
    assert b"(???) Tj" in data


def test_overlong_text_stays_on_one_page() -> None:
    data = render_pdf([f"line {i}" for i in range(MAX_LINES + 20)])
    assert data.count(b" Tj") == MAX_LINES
    assert b"/Count 1" in data
