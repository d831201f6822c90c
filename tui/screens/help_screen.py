"""The help screen (F1 or "?"): what each pane shows and every key, as currently mapped."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ..keymap import ACTIONS, default_path, display_key, keys_for
from ..safe import hanging

PANES = (
    (
        "1 Domain",
        "The domain's MX hosts in preference order, each address with its reverse (PTR) name "
        "and a status mark: '...' probing, 'OK', 'WARN', 'FAIL', '--' not probed, 'STOP' "
        "cancelled. Below, the domain's policies: MTA-STS mode and whether each MX is covered, "
        "TLS-RPT, DNSSEC and DANE per MX. Moving onto an address (arrow keys, Enter) chooses what "
        "panes 2-4 show.",
    ),
    (
        "2 Transcript",
        "The SMTP dialogue with the chosen address: 'S:' server, 'C:' client, 'TLS' handshake "
        "steps, '!!' errors and timeouts, each with the time since the connection started. "
        "Side probes (TLS version sweep, STARTTLS injection test) are folded into one line. "
        "While the server does not answer, the header counts the seconds it has waited.",
    ),
    (
        "3 Chain",
        "The certificate chain, leaf first. [sent] = the server sent it, [aia] = fetched "
        "because the server did not, [store] = the root from the trust store. Below the tree, "
        "the highlighted certificate and every check it failed.",
    ),
    (
        "4 Endpoints",
        "Every OCSP, CRL and caIssuers URL in the chain, fetched from this machine: the result, "
        "HTTP status, time and what the answer said. Failing ones are what a firewall blocks.",
    ),
    (
        "5 Findings",
        "Everything found, worst first. Enter jumps to the evidence (transcript line, "
        "certificate or endpoint). The text under the list says why it matters and what to do.",
    ),
)


def help_text(keymap: dict[str, str], width: int = 76) -> Text:
    """The help, wrapped to `width` with every wrapped line under its own text (a key's
    explanation under the explanation, not under the key)."""
    rows: list[tuple[Text, Text]] = [
        (Text(), Text("mxlens: why does mail to this domain fail over TLS?", "bold")),
        (Text(), Text()),
        (Text(), Text("Panes", "bold underline")),
    ]
    for name, text in PANES:
        rows.append((Text(), Text(name, "bold")))
        rows.append((Text("  "), Text(text)))
    rows += [(Text(), Text()), (Text(), Text("Keys", "bold underline"))]
    for a in ACTIONS:
        keys = ", ".join(display_key(k) for k in keys_for(a.id, keymap).split(","))
        rows.append((Text(f"  {keys:<16}", "bold"), Text(f"{a.help}  (id: {a.id})")))
    rows.append((Text(f"  {'ctrl+p':<16}", "bold"), Text("Command palette: every action by name.")))
    rows.append(
        (
            Text(f"  {'arrows, Enter':<16}", "bold"),
            Text("Move and choose inside a pane. The mouse works too but is never needed."),
        )
    )
    rows += [(Text(), Text()), (Text(), Text("Remapping keys", "bold underline"))]
    rows.append(
        (
            Text("  "),
            Text(
                f"Put 'action_id = key' lines in {default_path()} (or the file named by "
                "$MXLENS_KEYS), e.g. 'quit = ctrl+q' or 'new_target = slash,g'. JSON "
                '({"quit": "ctrl+q"}) works too.'
            ),
        )
    )
    rows += [(Text(), Text()), (Text(), Text("Close this help with Esc, q, ? or F1.", "dim"))]
    return hanging(rows, width)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,question_mark,f1,enter", "close", "Close", id="help_close"),
    ]

    def __init__(self, keymap: dict[str, str]) -> None:
        super().__init__(id="help-screen")
        self._keymap = keymap

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body") as body:
            body.border_title = "Help"
            yield Static(help_text(self._keymap), id="help-text")

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()
        self.call_after_refresh(self._fit)

    def on_resize(self) -> None:
        self.call_after_refresh(self._fit)

    def _fit(self) -> None:
        # wrapped to the real width once the layout is known, so the Static never re-wraps
        width = self.query_one("#help-body", VerticalScroll).scrollable_content_region.width
        if width:
            self.query_one("#help-text", Static).update(help_text(self._keymap, width))

    def action_close(self) -> None:
        self.dismiss(None)
