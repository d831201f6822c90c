"""The connector form ("o"): pick a sender/connector profile, optionally a TlsDomain, and see
at once whether it would deliver. Nothing is probed again: the finished report is re-graded
(probes.interpret.connectors.judge), so moving through the profiles is instant.

Up/down choose the profile, Tab goes to the TlsDomain box, Enter closes the form and keeps
the verdict (the ticket report "m" then includes it), Escape or ctrl+g closes without keeping it.
"""

from __future__ import annotations

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from probes.interpret.connectors import PROFILES, ConnectorResult, judge
from probes.model.errors import CheckError
from probes.report import Report

from ..safe import safe_text
from . import page

KEYS_HINT = "Up/Down profile  Tab name box  Enter keep  PgUp/PgDn scroll  Esc/^g close"
# Below this many columns in the box a profile line would wrap: the list then shows the
# names and the verdict below names the highlighted profile in full.
_WIDE = 108


class ConnectorForm(ModalScreen[ConnectorResult | None]):
    # Full screen up to 120x40: the list and the verdict share the height, so at 80x24 the
    # list scrolls instead of pushing the verdict off the screen.
    DEFAULT_CSS = """
    ConnectorForm { align: center middle; }
    ConnectorForm > #connector-box { width: 100%; max-width: 120; height: 100%; max-height: 40;
        border: round $accent; background: $surface; padding: 0 1; }
    ConnectorForm #connector-list { height: 1fr; }
    ConnectorForm #connector-scroll { height: 1fr; }
    ConnectorForm #connector-keys { height: 1; color: $text-muted; }
    """
    BINDINGS = [
        # ctrl+g too: Esc is unreliable over some SSH links, and q would type into the box
        Binding("escape,ctrl+g", "close", "Close"),
        # priority: the focused list or box would otherwise take them
        Binding("pagedown", "scroll_verdict(1)", "Scroll", show=False, priority=True),
        Binding("pageup", "scroll_verdict(-1)", "Scroll", show=False, priority=True),
    ]

    def __init__(
        self, report: Report, *, profile: str | None = None, tls_domain: str | None = None
    ) -> None:
        super().__init__()
        self.report = report
        self.start_profile = profile
        self.start_domain = tls_domain or report.options.expect_name or ""
        self.result: ConnectorResult | None = None
        self.wide = True  # the list shows name and title; see on_resize

    def compose(self) -> ComposeResult:
        with Vertical(id="connector-box"):
            yield Static(
                Text(
                    "Would this connector deliver? (no new probe: the report is re-graded)", "bold"
                )
            )
            yield OptionList(*self._options(wide=True), id="connector-list")
            yield Input(
                value=self.start_domain,
                placeholder="TlsDomain / TlsSenderCertificateName / match= name (wildcards allowed)",
                id="connector-name",
            )
            with VerticalScroll(id="connector-scroll"):
                yield Static(id="connector-verdict")
            yield Static(Text(KEYS_HINT), id="connector-keys")

    def _options(self, *, wide: bool) -> list[Option]:
        width = max(len(name) for name in PROFILES) + 2
        return [
            Option(Text(f"{p.name:{width}}{p.title}" if wide else p.name), id=p.name)
            for p in PROFILES.values()
        ]

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.styles.max_height = len(PROFILES) + 2  # + its border
        names = list(PROFILES)
        options.highlighted = names.index(self.start_profile) if self.start_profile in names else 0
        options.focus()
        self.regrade()

    def on_resize(self, event: events.Resize) -> None:
        wide = min(event.size.width, 120) - 4 >= _WIDE  # the box's border and padding
        if wide == self.wide:
            return
        self.wide = wide
        options = self.query_one(OptionList)
        index = options.highlighted
        options.clear_options()
        options.add_options(self._options(wide=wide))
        options.highlighted = index
        self.regrade()

    @property
    def profile_name(self) -> str:
        index = self.query_one(OptionList).highlighted
        return list(PROFILES)[index or 0]

    def regrade(self) -> None:
        name = self.query_one(Input).value.strip() or None
        profile = PROFILES[self.profile_name]
        out = Text()
        if not self.wide:
            out.append(f"{profile.name}: {profile.title}\n", "bold")
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

    def action_scroll_verdict(self, direction: int) -> None:
        page(self.query_one("#connector-scroll", VerticalScroll), direction)

    def action_close(self) -> None:
        self.dismiss(None)
