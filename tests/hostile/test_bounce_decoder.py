"""A bounce quotes the remote server's own reply, so a hostile server can plant text in it:
the decoder must stay linear in its input, read only a bounded start of it, and never keep
the UI waiting."""

from __future__ import annotations

import io
import sys
import time
from typing import Any

import pytest

from probes.interpret.explain import MAX_TEXT, explain, knowledge, rules
from tests.support.ui import LARGE, make_app, wait_decoded
from tui.cli import main

# the parser behind re.compile, to read a pattern's quantifiers
if sys.version_info >= (3, 11):
    import re._parser as sre_parse
    from re._constants import MAX_REPEAT, MAXREPEAT, MIN_REPEAT
else:
    import sre_parse
    from sre_constants import MAX_REPEAT, MAXREPEAT, MIN_REPEAT

ONE_MB = 1024 * 1024


def _unbounded(pattern: str) -> list[str]:
    """The repeated items of a pattern with no upper bound, except whitespace (the decoder
    collapses runs of whitespace to one space, so `\\s*` and `\\s+` match at most one)."""
    found: list[str] = []

    def whitespace_only(sub: Any) -> bool:
        items = list(sub)
        return (
            len(items) == 1
            and str(items[0][0]) == "IN"
            and [str(x[1]) for x in items[0][1]] == ["CATEGORY_SPACE"]
        )

    def walk(node: Any) -> None:
        for op, av in node:
            if op in (MAX_REPEAT, MIN_REPEAT):
                _lo, hi, sub = av
                if hi == MAXREPEAT and not whitespace_only(sub):
                    found.append(str(sub)[:60])
                walk(sub)
                continue
            for part in av if isinstance(av, (list, tuple)) else ():
                if isinstance(part, sre_parse.SubPattern):
                    walk(part)
                elif isinstance(part, (list, tuple)):
                    for sub in part:
                        if isinstance(sub, sre_parse.SubPattern):
                            walk(sub)

    walk(sre_parse.parse(pattern))
    return found


def test_the_lint_itself_sees_unbounded_repeats() -> None:
    assert _unbounded(r"4\.4\.317.*?TLS") and _unbounded(r"(?:\.[a-z]{1,63})+")
    assert _unbounded(r"(?:a|b[^x]+)") and not _unbounded(r"a\s*b.{0,400}?c(?:\.x){1,9}")


def test_every_pattern_has_bounded_quantifiers_only() -> None:
    # An unbounded repeat next to another is what makes a backtracking search quadratic.
    k = knowledge()
    patterns = [(r.id, r.pattern.pattern) for r in k.rules]
    for name in ("status_code", "reply_code", "remote", "recipient", "detail", "inner_reply"):
        patterns += [(name, p.pattern) for p in getattr(k, name)]
    patterns += [(d.id, d.pattern.pattern) for d in k.details]
    bad = {name: found for name, pattern in patterns if (found := _unbounded(pattern))}
    assert bad == {}


def _hostile_texts() -> dict[str, str]:
    """1 MB texts built to make a backtracking pattern work hard: the repeats named in the
    issue, and for every rule its own example cut short and repeated, so a new rule in
    bounces.json is covered without a new test."""
    texts = {
        "labels": "aaaaa." * (ONE_MB // 6),
        "dots": "a." * (ONE_MB // 2),
        "at signs": "a@" * (ONE_MB // 2),
        "exchange code": "4.4.317 " * (ONE_MB // 8),
        "brackets": "mx.a [" * (ONE_MB // 6),
        "recipients": "to=<a" * (ONE_MB // 5),
        "server name": "LastAttemptedServerName=a.b " * (ONE_MB // 28),
        "postfix": "certificate verification failed for " * (ONE_MB // 36),
    }
    for rule in rules():
        if rule.example:
            half = rule.example[: max(8, len(rule.example) // 2)]
            texts[rule.id] = (half * (ONE_MB // len(half) + 1))[:ONE_MB]
    return texts


@pytest.mark.parametrize("name, text", sorted(_hostile_texts().items()))
def test_one_megabyte_of_hostile_text_is_decoded_in_under_a_second(name: str, text: str) -> None:
    start = time.process_time()
    got = explain(text)
    took = time.process_time() - start
    assert took < 1.0, f"{name}: {took:.2f} s of CPU"
    assert got.truncated


def test_a_long_paste_says_it_was_cut_and_a_short_one_does_not() -> None:
    assert not explain("x" * MAX_TEXT).truncated
    cut = explain("x" * (MAX_TEXT + 1))
    assert cut.truncated and cut.to_json()["truncated"] is True


def test_cli_reads_a_bounded_start_of_stdin_and_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = ("aaaaa." * 200_000).encode() + b" TLS is required, but was not offered"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    start = time.process_time()
    code = main(["explain", "-"])
    took = time.process_time() - start
    out, err = capsys.readouterr()
    assert took < 1.0
    assert code == 1 and err == ""  # the tail that would be recognised was not read
    assert f"only the first {MAX_TEXT // 1024} KB of the text were read" in out


@pytest.mark.ui
async def test_the_ui_answers_keys_while_a_huge_paste_is_decoded(tmp_path: Any) -> None:
    from textual.widgets import Static, TextArea

    from tui.screens.explain_prompt import ExplainPrompt

    app = make_app(tmp_path)
    async with app.run_test(size=LARGE) as pilot:
        await pilot.pause()
        await pilot.press("x")
        await pilot.pause()
        prompt = app.screen
        assert isinstance(prompt, ExplainPrompt)
        area = prompt.query_one(TextArea)
        area.load_text("aaaaa." * 10_000 + " TLS is required, but was not offered")
        for _ in range(5):  # each keystroke restarts the quiet spell; none waits for a decode
            await pilot.press("b")
        await wait_decoded(pilot)
        shown = str(prompt.query_one("#explain-result", Static).render())
        assert "Not recognised" in shown and "only the first 16 KB" in shown
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert not isinstance(app.screen, ExplainPrompt)
