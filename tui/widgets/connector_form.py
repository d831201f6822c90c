"""The connector form ("o"): pick a sender/connector profile, optionally a TlsDomain, and see
at once whether it would deliver. Nothing is probed again: the finished report is re-graded
(probes.connectors.judge), so moving through the profiles is instant.

Up/down choose the profile, Tab goes to the TlsDomain box, Enter closes the form and keeps
the verdict (the ticket report "m" then includes it), Escape closes without keeping it.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from probes.connectors import PROFILES, ConnectorResult, judge
from probes.errors import CheckError
from probes.report import Report

from ..safe import safe_text


class ConnectorForm(ModalScreen[ConnectorResult | None]):
    DEFAULT_CSS = """
    ConnectorForm { align: center middle; }
    ConnectorForm > #connector-box { width: 100%; max-width: 110; height: auto; max-height: 40;
        border: round $accent; background: $surface; padding: 0 1; }
    ConnectorForm #connector-list { height: auto; max-height: 14; }
    ConnectorForm #connector-verdict { height: auto; min-height: 3; }
    """
    BINDINGS = [Binding("escape", "close", "Close")]

    def __init__(
        self, report: Report, *, profile: str | None = None, tls_domain: str | None = None
    ) -> None:
        super().__init__()
        self.report = report
        self.start_profile = profile
        self.start_domain = tls_domain or report.options.expect_name or ""
        self.result: ConnectorResult | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="connector-box"):
            yield Static(
                Text(
                    "Would this connector deliver? (no new probe: the report is re-graded)", "bold"
                )
            )
            yield OptionList(
                *(Option(Text(f"{p.name:28} {p.title}"), id=p.name) for p in PROFILES.values()),
                id="connector-list",
            )
            yield Input(
                value=self.start_domain,
                placeholder="TlsDomain / TlsSenderCertificateName / match= name (wildcards allowed)",
                id="connector-name",
            )
            yield Static(id="connector-verdict")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        names = list(PROFILES)
        options.highlighted = names.index(self.start_profile) if self.start_profile in names else 0
        options.focus()
        self.regrade()

    @property
    def profile_name(self) -> str:
        index = self.query_one(OptionList).highlighted
        return list(PROFILES)[index or 0]

    def regrade(self) -> None:
        name = self.query_one(Input).value.strip() or None
        profile = PROFILES[self.profile_name]
        out = Text()
        try:
            self.result = judge(self.report, profile, name)
        except CheckError as exc:
            self.result = None
            out.append("NEEDS INPUT ", "bold yellow")
            out.append_text(safe_text(str(exc)))
        else:
            word, style = (
                ("DELIVERS", "bold green") if self.result.delivers else ("FAILS", "bold red")
            )
            out.append(f"{word} ", style)
            out.append_text(safe_text(self.result.verdict))
        out.append("\n")
        out.append_text(safe_text(profile.source, "dim"))
        self.query_one("#connector-verdict", Static).update(out)

    @on(OptionList.OptionHighlighted)
    def _highlighted(self) -> None:
        self.regrade()

    @on(OptionList.OptionSelected)
    def _selected(self) -> None:
        self.regrade()
        self.dismiss(self.result)

    @on(Input.Changed)
    def _name_changed(self) -> None:
        self.regrade()

    @on(Input.Submitted)
    def _name_submitted(self) -> None:
        self.regrade()
        self.dismiss(self.result)

    def action_close(self) -> None:
        self.dismiss(None)
