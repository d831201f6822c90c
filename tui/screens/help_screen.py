"""The help screen (F1 or "?"): what each pane shows and every key, as currently mapped."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ..keymap import ACTIONS, default_path, display_key, keys_for

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


def help_text(keymap: dict[str, str]) -> Text:
    out = Text()
    out.append("mxlens: why does mail to this domain fail over TLS?\n\n", "bold")
    out.append("Panes\n", "bold underline")
    for name, text in PANES:
        out.append(f"{name}\n", "bold")
        out.append(f"  {text}\n")
    out.append("\nKeys\n", "bold underline")
    for a in ACTIONS:
        keys = ", ".join(display_key(k) for k in keys_for(a.id, keymap).split(","))
        out.append(f"  {keys:<16}", "bold")
        out.append(f"{a.help}  (id: {a.id})\n")
    out.append(f"  {'ctrl+p':<16}", "bold")
    out.append("Command palette: every action by name.\n")
    out.append(f"  {'arrows, Enter':<16}", "bold")
    out.append("Move and choose inside a pane. The mouse works too but is never needed.\n")
    out.append("\nRemapping keys\n", "bold underline")
    out.append(
        f"  Put 'action_id = key' lines in {default_path()} (or the file named by $MXLENS_KEYS),\n"
        "  e.g. 'quit = ctrl+q' or 'new_target = slash,g'. JSON ({\"quit\": \"ctrl+q\"}) works too.\n"
    )
    out.append("\nClose this help with Esc, q, ? or F1.\n", "dim")
    return out


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

    def action_close(self) -> None:
        self.dismiss(None)
