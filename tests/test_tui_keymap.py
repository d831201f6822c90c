"""tui/keymap.py: every binding has an id, and the key file parser (simple format, JSON,
bad lines, missing and broken files)."""

from __future__ import annotations

from pathlib import Path

from tui.keymap import ACTION_IDS, ACTIONS, bindings, load_keymap, parse_keymap


def test_every_binding_has_an_id() -> None:
    ids = [b.id for b in bindings()]
    assert len(ids) == len(set(ids)) == len(ACTIONS)
    assert {"quit", "new_target", "rerun", "cancel", "firewall", "help"} <= set(ids)


def test_parse_keymap_simple_format() -> None:
    text = '# mine\n[keys]\nquit = ctrl+q\nnew_target = "slash,n"  # comment\n\n'
    keymap, problems = parse_keymap(text)
    assert keymap == {"quit": "ctrl+q", "new_target": "slash,n"}
    assert problems == []


def test_parse_keymap_reports_bad_lines_and_keeps_good_ones() -> None:
    keymap, problems = parse_keymap("quit = x\nexplode = y\nrerun\nhelp = two words\n")
    assert keymap == {"quit": "x"}
    assert len(problems) == 3
    assert "unknown action 'explode'" in problems[0]


def test_parse_keymap_json() -> None:
    keymap, problems = parse_keymap('{"quit": "ctrl+q", "cancel": 3}')
    assert keymap == {"quit": "ctrl+q"}
    assert problems and "string" in problems[0]
    assert parse_keymap("{not json")[1]


def test_load_keymap_missing_and_broken_files(tmp_path: Path) -> None:
    assert load_keymap(tmp_path / "nope.conf") == ({}, None)
    bad = tmp_path / "keys.conf"
    bad.write_bytes(b"quit = x\nwhat\xff = y\nfoo = bar\n")
    keymap, warning = load_keymap(bad)
    assert keymap == {}  # undecodable: warned, not crashed
    assert warning is not None and "\n" not in warning
    bad.write_text("quit = x\nfoo = bar\nbaz = q\n")
    keymap, warning = load_keymap(bad)
    assert keymap == {"quit": "x"}
    assert warning is not None and "and 1 more" in warning and "\n" not in warning
    assert set(keymap) <= ACTION_IDS
