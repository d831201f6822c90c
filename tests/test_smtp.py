"""The RFC 5321 reply parser (pure: no sockets)."""

from __future__ import annotations

from probes.net.smtp import MAX_REPLY_LINES, ReplyParser, parse_reply


def test_single_line() -> None:
    reply = parse_reply([b"220 mx.example.org ESMTP Postfix\r\n"])
    assert reply.code == 220
    assert reply.lines == ["220 mx.example.org ESMTP Postfix"]
    assert reply.text == "mx.example.org ESMTP Postfix"
    assert reply.malformed == [] and not reply.overflow


def test_multi_line_and_keywords() -> None:
    lines = [
        "250-mx.example.org",
        "250-PIPELINING",
        "250-SIZE 1000",
        "250-starttls",
        "250 8BITMIME",
    ]
    parser = ReplyParser()
    results = [parser.feed(line) for line in lines]
    assert results[:-1] == [None] * 4  # nothing until the final line
    reply = results[-1]
    assert reply is not None and reply.code == 250
    assert reply.lines == lines
    assert reply.text.split("\n") == [
        "mx.example.org",
        "PIPELINING",
        "SIZE 1000",
        "starttls",
        "8BITMIME",
    ]
    assert reply.keywords == ["PIPELINING", "SIZE", "STARTTLS", "8BITMIME"]
    assert reply.malformed == []


def test_parser_is_reusable_for_the_next_reply() -> None:
    parser = ReplyParser()
    assert parser.feed("250-a") is None
    first = parser.feed("250 b")
    second = parser.feed("221 bye")
    assert first is not None and first.code == 250 and first.lines == ["250-a", "250 b"]
    assert second is not None and second.code == 221 and second.lines == ["221 bye"]


def test_bare_code_ends_a_reply() -> None:
    reply = parse_reply(["250"])
    assert reply.code == 250 and reply.text == "" and reply.malformed == []
    parser = ReplyParser()
    assert parser.feed("250-first") is None
    last = parser.feed("250")
    assert last is not None and last.lines == ["250-first", "250"]


def test_mixed_codes_are_malformed() -> None:
    reply = parse_reply(["250-mx.example.org", "251-ODD", "250 OK"])
    assert reply.code == 250
    assert len(reply.lines) == 3
    assert any("mixed codes" in reason and "251" in reason for reason in reply.malformed)


def test_over_long_line_is_cut_and_flagged() -> None:
    long_line = b"250-" + b"x" * 600
    parser = ReplyParser()
    assert parser.feed(long_line) is None  # reading goes on
    reply = parser.feed(b"250 OK")
    assert reply is not None and reply.code == 250
    assert len(reply.lines[0].encode()) == 510  # 512 octets with CRLF
    assert any("606 octets" in reason for reason in reply.malformed)
    # A line of exactly 512 octets with CRLF is allowed.
    assert parse_reply([b"250 " + b"y" * 506]).malformed == []


def test_octets_reported_by_the_reader_count() -> None:
    # The connection keeps only the start of a huge line and tells the parser its real size.
    reply = ReplyParser().feed(b"220 " + b"z" * 100, octets=70_000)
    assert reply is not None and reply.overflow
    assert any("70000 octets" in reason for reason in reply.malformed)


def test_missing_separator_and_garbage() -> None:
    odd = parse_reply(["250xOK"])
    assert odd.code == 250 and any("space or hyphen" in r for r in odd.malformed)

    ssh = parse_reply(["SSH-2.0-OpenSSH_9.6"])
    assert ssh.code == 0 and ssh.lines == ["SSH-2.0-OpenSSH_9.6"]
    assert any("3-digit code" in r for r in ssh.malformed)

    # A garbage line inside a multi-line reply does not end it (no desynchronisation).
    parser = ReplyParser()
    assert parser.feed("250-mx") is None
    assert parser.feed("garbage") is None
    reply = parser.feed("250 OK")
    assert reply is not None and reply.code == 250 and len(reply.lines) == 3
    assert reply.malformed

    assert any("not a valid reply code" in r for r in parse_reply(["999 what"]).malformed)
    assert any("not a valid reply code" in r for r in parse_reply(["170 low"]).malformed)


def test_invalid_utf8_and_controls_kept() -> None:
    reply = parse_reply([b"220 caf\xc3\xa9 \xff\xfe \x1b[2J [bold]hi[/bold]\r\n"])
    assert reply.lines == ["220 caf\u00e9 \ufffd\ufffd \x1b[2J [bold]hi[/bold]"]
    assert reply.malformed == []  # bad UTF-8 is not an RFC 5321 violation


def test_line_cap() -> None:
    parser = ReplyParser()
    results = [parser.feed(f"250-line {i}") for i in range(MAX_REPLY_LINES)]
    assert results[:-1] == [None] * (MAX_REPLY_LINES - 1)
    capped = results[-1]
    assert capped is not None and capped.overflow
    assert len(capped.lines) == MAX_REPLY_LINES
    assert any("100 lines" in r for r in capped.malformed)
    # 100 lines that end properly are fine.
    ok = parse_reply([f"250-l{i}" for i in range(99)] + ["250 end"])
    assert not ok.overflow and ok.malformed == []


def test_octet_cap() -> None:
    parser = ReplyParser()
    reply = None
    fed = 0
    while reply is None:
        reply = parser.feed(b"250-" + b"a" * 1996)  # 2002 octets each (over-long, counted)
        fed += 1
    assert reply.overflow and fed == 33  # 33 * 2002 > 65536, long before 100 lines
    assert len(reply.lines) == 33
    assert any("65536 octets" in r for r in reply.malformed)


def test_cut_short_and_empty() -> None:
    cut = parse_reply(["250-a", "250-b"])
    assert cut.code == 250 and any("without a final line" in r for r in cut.malformed)
    empty = parse_reply([])
    assert empty.code == 0 and empty.malformed


def test_connect_errors_that_mean_not_tested_from_here() -> None:
    import errno

    from probes.net.smtp import classify_connect_error

    # IPv6 without a route on this host: nothing reached the server.
    code, reason = classify_connect_error(
        OSError(errno.ENETUNREACH, "Network is unreachable"), "2001:db8::25", 25
    )
    assert code == "no-route-here" and "not tested" in reason
    # The same error for IPv4 is a real reachability problem of this route.
    code, _ = classify_connect_error(
        OSError(errno.ENETUNREACH, "Network is unreachable"), "192.0.2.25", 25
    )
    assert code == "unreachable"
    # A host unreachable answer comes from the network, not from this host's setup.
    code, _ = classify_connect_error(
        OSError(errno.EHOSTUNREACH, "No route to host"), "2001:db8::25", 25
    )
    assert code == "unreachable"
