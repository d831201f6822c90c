"""Pane 5: every finding of the run, worst first. Enter on one jumps to the pane and line
that shows its evidence (a transcript line, a certificate, an endpoint row)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.message import Message
from textual.widget import Widget
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from probes.model.events import DiagnosisFinished, Event, Finding, FindingRaised
from probes.model.findings import SEVERITY_ORDER

from ..safe import join, mark, safe_text
from . import Pane


def finding_order(f: Finding) -> tuple[int, str, str]:
    return (SEVERITY_ORDER.get(f.severity, 9), str(f.where), f.id)


class FindingsBar(Pane):
    number = 5
    pane_title = "Findings"

    class Jump(Message):
        """The user asked to see the evidence of a finding."""

        def __init__(self, finding: Finding) -> None:
            super().__init__()
            self.finding = finding

    def compose(self) -> ComposeResult:
        yield OptionList(id="findings-list")
        yield Static(Text(""), id="findings-detail")

    def on_mount(self) -> None:
        self.reset()

    @property
    def olist(self) -> OptionList:
        return self.query_one("#findings-list", OptionList)

    def focus_target(self) -> Widget:
        return self.olist

    def reset(self) -> None:
        super().reset()
        self.findings: list[Finding] = []
        # While the user stays on the top row, the highlight follows the worst finding as the
        # list re-sorts; once they move, it stays on the finding they chose (by identity:
        # findings sorted in above it move its row).
        self._chosen: Finding | None = None
        self._placed: int | None = None  # the row this widget last highlighted itself
        self.olist.clear_options()
        self._detail(None)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.severity] = out.get(f.severity, 0) + 1
        return out

    def add_event(self, event: Event) -> None:
        if isinstance(event, DiagnosisFinished) and not self.findings:
            # The verdict goes in the list itself (a row that cannot be chosen): hiding the
            # list would take the keyboard focus away with it.
            self.olist.add_option(
                Option(
                    join(mark("ok"), Text("No findings: nothing wrong was seen on this route.")),
                    disabled=True,
                )
            )
        if not isinstance(event, FindingRaised):
            return
        lst = self.olist
        # A row the user moved to (keys are handled before this event, messages may not be).
        if lst.highlighted is not None and lst.highlighted != self._placed:
            self._chosen = self._highlighted() if lst.highlighted > 0 else None
        self.findings.append(event.finding)
        self.findings.sort(key=finding_order)
        lst.clear_options()
        lst.add_options(Option(self._prompt(f)) for f in self.findings)
        # A finding is always highlighted, so its why and fix show at once and Enter works
        # without an arrow key first.
        chosen = self._chosen
        self._placed = self.findings.index(chosen) if chosen in self.findings else 0
        lst.highlighted = self._placed
        self._detail(self._highlighted())

    def select(self, finding: Finding) -> None:
        if finding in self.findings:
            self._chosen = finding
            self.olist.highlighted = self.findings.index(finding)

    def _highlighted(self) -> Finding | None:
        index = self.olist.highlighted
        if index is None or index >= len(self.findings):
            return None
        return self.findings[index]

    def _prompt(self, f: Finding) -> Text:
        return join(
            mark(f.severity),
            Text(f.id, "bold"),
            safe_text(str(f.where), "dim"),
            safe_text(f.summary),
        )

    def _detail(self, f: Finding | None) -> None:
        detail = self.query_one("#findings-detail", Static)
        if f is None:
            detail.update(
                Text("Enter on a finding shows its evidence.", "dim") if self.findings else Text("")
            )
            return
        out = Text()
        if f.detail:
            out.append(safe_text(f.detail))
        if f.fix:
            out.append(Text("\nFix: ", "bold"))
            out.append(safe_text(f.fix))
        out.append(Text("\nEnter: show the evidence", "dim"))
        detail.update(out)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        if event.option_index != self._placed:  # the user moved
            self._placed = None
            self._chosen = self._highlighted() if event.option_index > 0 else None
        self._detail(self._highlighted())

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        f = self._highlighted()
        if f is not None:
            self.post_message(self.Jump(f))
