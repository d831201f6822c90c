"""Every action of the UI, its default key, and the user's key file.

Bindings carry ids so users can remap them with `App.set_keymap`. The key file is read at
start; Python 3.10 has no tomllib, so the format is deliberately tiny:

    # ~/.config/mxlens/keys.conf   (or the file named by $MXLENS_KEYS)
    # one "action = key" per line; several keys separated by commas; '#' starts a comment
    quit = ctrl+q
    new_target = slash,g
    pane_1 = f2

Quotes around a key are allowed (so `quit = "ctrl+q"` from a TOML-minded user works), and
a `[section]` line is ignored. A file whose first non-blank character is "{" is read as JSON
instead: {"quit": "ctrl+q"}. Key names are Textual's: letters, digits, f1..f12, ctrl+x,
shift+tab, slash, question_mark, ... A bad file never stops the app: what is valid is used,
and one warning line says what was not.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from textual.binding import Binding


@dataclass(frozen=True)
class ActionSpec:
    id: str  # the binding id users remap
    keys: str  # default keys, comma separated (Textual names)
    action: str  # the App action it runs
    label: str  # short footer / palette text
    help: str  # one line for the help screen and the command palette
    show: bool = True  # shown in the footer
    priority: bool = False  # checked before the focused widget (tab, ctrl+c)
    key_display: str | None = None


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("quit", "q", "quit", "Quit", "Quit mxlens (cancels a running diagnosis first)."),
    ActionSpec(
        "new_target",
        "slash,g",
        "new_target",
        "Check",
        "Enter a new domain (or MX host) to diagnose.",
    ),
    ActionSpec("rerun", "r", "rerun", "Rerun", "Run the diagnosis of the current domain again."),
    ActionSpec("cancel", "c", "cancel", "Cancel", "Cancel the running diagnosis."),
    ActionSpec(
        "firewall",
        "f",
        "firewall",
        "Firewall",
        "Copy the CA endpoint host:port list to allow outbound, and save it to a file.",
    ),
    ActionSpec(
        "side_probes",
        "t",
        "side_probes",
        "Side",
        "Show or hide the side-probe sessions (TLS versions, injection) in the transcript.",
    ),
    ActionSpec(
        "walk",
        "w",
        "walk",
        "Walk",
        "Walk-through: the steps a sender takes, the first failing one selected; Enter shows its evidence.",
    ),
    ActionSpec(
        "connector",
        "o",
        "connector",
        "Connector",
        "Judge as a connector (Exchange Online, Postfix, MTA-STS): would it deliver? No new probe.",
    ),
    ActionSpec(
        "ticket",
        "m",
        "ticket",
        "Ticket",
        "Copy the walk-through and findings as Markdown (OSC 52) and save them to a file.",
    ),
    ActionSpec(
        "ticket_text",
        "M",
        "ticket('text')",
        "Text ticket",
        "The same ticket report as plain text, for ticket systems that show Markdown as typed.",
        show=False,
    ),
    ActionSpec(
        "history",
        "h",
        "history",
        "History",
        "History: this domain's last two recorded checks side by side, and what changed.",
        show=False,
    ),
    ActionSpec(
        "explain",
        "x",
        "explain",
        "Explain",
        "Paste a bounce or mail log line: decode it, then check the domain it names.",
    ),
    ActionSpec(
        "listen",
        "l",
        "listen",
        "Listen",
        "Our own side: receive test mail from your sending server and judge the certificate it presents.",
        show=False,  # the 80x24 key bar is full; the help screen and the palette list it
    ),
    ActionSpec("help", "question_mark,f1", "help", "Help", "Show the help screen (also F1)."),
    ActionSpec(
        "pane_1", "1", "pane(1)", "Domain", "Go to pane 1: domain, MX and policies.", show=False
    ),
    ActionSpec(
        "pane_2", "2", "pane(2)", "Transcript", "Go to pane 2: the SMTP/TLS transcript.", show=False
    ),
    ActionSpec(
        "pane_3", "3", "pane(3)", "Chain", "Go to pane 3: the certificate chain.", show=False
    ),
    ActionSpec(
        "pane_4", "4", "pane(4)", "Endpoints", "Go to pane 4: the CA endpoints.", show=False
    ),
    ActionSpec(
        "pane_5", "5", "pane(5)", "Findings", "Go to pane 5: the findings list.", show=False
    ),
    ActionSpec(
        "next_pane",
        "tab",
        "next_pane",
        "Next pane",
        "Go to the next pane.",
        priority=True,
        show=False,
    ),
    ActionSpec(
        "prev_pane",
        "shift+tab",
        "prev_pane",
        "Previous pane",
        "Go to the previous pane.",
        priority=True,
        show=False,
    ),
    ActionSpec(
        "interrupt",
        "ctrl+c",
        "interrupt",
        "Stop",
        "Cancel the running diagnosis; when nothing runs, quit.",
        priority=True,
    ),
)

ACTION_IDS: frozenset[str] = frozenset(a.id for a in ACTIONS)
_KEY_RE = re.compile(r"^[A-Za-z0-9_+\-]+$|^[^\s,]$")


def bindings() -> list[Binding | tuple[str, str] | tuple[str, str, str]]:
    """The app's bindings, each with its id so a keymap can replace its keys."""
    return [
        Binding(
            a.keys,
            a.action,
            a.label,
            show=a.show,
            priority=a.priority,
            id=a.id,
            key_display=a.key_display,
            tooltip=a.help,
        )
        for a in ACTIONS
    ]


def default_path() -> Path:
    """$MXLENS_KEYS, else $XDG_CONFIG_HOME/mxlens/keys.conf, else ~/.config/mxlens/keys.conf."""
    explicit = os.environ.get("MXLENS_KEYS")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mxlens" / "keys.conf"


def parse_keymap(text: str) -> tuple[dict[str, str], list[str]]:
    """Parse the key file's text. Returns (valid id -> keys, problems in file order)."""
    # (where, id, value); id None means the line itself could not be read.
    raw: list[tuple[str, str | None, object]] = []
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            return {}, [f"not valid JSON: {exc}"]
        if not isinstance(data, dict):
            return {}, ["JSON must be an object of action: key"]
        raw = [(f"key {k!r}", str(k), v) for k, v in data.items()]
    else:
        for n, line in enumerate(text.splitlines(), 1):
            stripped = line.split("#", 1)[0].strip()
            if not stripped or (stripped.startswith("[") and stripped.endswith("]")):
                continue
            if "=" not in stripped:
                raw.append((f"line {n}", None, "expected 'action = key'"))
                continue
            name, _, value = stripped.partition("=")
            raw.append((f"line {n}", name.strip().strip("\"'"), value.strip()))
    keymap: dict[str, str] = {}
    problems: list[str] = []
    for where, action, setting in raw:
        if action is None:
            problems.append(f"{where}: {setting}")
            continue
        if action not in ACTION_IDS:
            problems.append(f"{where}: unknown action {action!r}")
            continue
        if not isinstance(setting, str):
            problems.append(f"{where}: the key must be a string")
            continue
        keys = [k.strip().strip("\"'").strip() for k in setting.strip().strip("\"'").split(",")]
        if not keys or any(not k or not _KEY_RE.match(k) for k in keys):
            problems.append(f"{where}: bad key {setting!r}")
            continue
        keymap[action] = ",".join(keys)
    return keymap, problems


def load_keymap(path: Path | None = None) -> tuple[dict[str, str], str | None]:
    """Read the user's key file. Returns (keymap, one-line warning or None). A missing file
    is not a problem; an unreadable or partly bad one gives a warning, never an exception."""
    path = path or default_path()
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}, None
    except (OSError, UnicodeDecodeError) as exc:
        return {}, f"key file {path} not read: {exc.__class__.__name__}"
    keymap, problems = parse_keymap(text)
    if not problems:
        return keymap, None
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return keymap, f"key file {path}: {problems[0]}{more}; using default keys there"


def keys_for(action_id: str, keymap: dict[str, str]) -> str:
    """The keys an action is on, given the user's keymap (comma separated Textual names)."""
    if action_id in keymap:
        return keymap[action_id]
    for a in ACTIONS:
        if a.id == action_id:
            return a.keys
    return ""


def display_key(keys: str) -> str:
    """The first key of a binding as a user would type it: 'slash' -> '/'."""
    first = keys.split(",")[0].strip()
    return {"slash": "/", "question_mark": "?", "tab": "Tab", "shift+tab": "Shift+Tab"}.get(
        first, first
    )
