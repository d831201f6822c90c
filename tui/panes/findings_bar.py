"""Pane 5: every finding of the run, worst first. Enter on one jumps to the pane and line
that shows its evidence (a transcript line, a certificate, an endpoint row)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.message import Message
from textual.widget import Widget
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from probes.history.diff import RunDiff
from probes.model.events import DiagnosisFinished, Event, Finding, FindingRaised
from probes.model.findings import SEVERITY_ORDER

from .. import change_marks
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
        self._changes: RunDiff | None = None  # since the last recorded check
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
        # The report has it already: the list is its findings, sorted for the view.
        found = self.report.findings if self.report is not None else [*self.findings, event.finding]
        self.findings = sorted(found, key=finding_order)
        lst.clear_options()
        lst.add_options(Option(self._prompt(f)) for f in self.findings)
        # A finding is always highlighted, so its why and fix show at once and Enter works
        # without an arrow key first.
        chosen = self._chosen
        self._placed = self.findings.index(chosen) if chosen in self.findings else 0
        lst.highlighted = self._placed
        self._detail(self._highlighted())

    def show_findings(self, findings: list[Finding]) -> None:
        """Show the report's findings as graded now (a kept connector re-grades them),
        keeping the user on the same finding (same id and place) when it is still there."""
        chosen = self._highlighted() if self.olist.highlighted else None
        self.findings = sorted(findings, key=finding_order)
        lst = self.olist
        lst.clear_options()
        lst.add_options(Option(self._prompt(f)) for f in self.findings)
        same = [
            i
            for i, f in enumerate(self.findings)
            if chosen is not None and (f.id, f.where) == (chosen.id, chosen.where)
        ]
        self._chosen = self.findings[same[0]] if same else None
        self._placed = same[0] if same else 0
        if self.findings:
            lst.highlighted = self._placed
        self._detail(self._highlighted())
        if self._changes is not None:
            self.mark_changes(self._changes)  # the history marks and GONE rows again

    def show_error(self, error: str) -> None:
        """The check could not be made: say so in the list, and the whole message (which
        the top line and pane 1 have no room for) wrapped below it."""
        self.olist.clear_options()
        self.olist.add_option(
            Option(join(mark("error"), Text("The check could not be made.")), disabled=True)
        )
        detail = self.query_one("#findings-detail", Static)
        detail.update(
            join(safe_text(error), Text("\nr = run again, / = another domain", "dim"), sep="")
        )

    def mark_changes(self, diff: RunDiff | None) -> None:
        """Mark findings that are new or re-graded since the last recorded check, and list
        the ones that are gone below the others (rows that cannot be chosen)."""
        self._changes = diff
        if not self.findings and (diff is None or not change_marks.of_kind(diff, "finding.")):
            return  # the "No findings" row stays as it is
        lst = self.olist
        keep = lst.highlighted
        lst.clear_options()
        lst.add_options(Option(self._prompt(f)) for f in self.findings)
        if not self.findings:
            lst.add_option(Option(Text("No findings now.", "dim"), disabled=True))
        for c in change_marks.of_kind(diff, "finding.removed"):
            lst.add_option(
                Option(
                    join(
                        Text("GONE", change_marks.STYLE),
                        Text(c.finding or "", "dim"),
                        safe_text(c.where, "dim"),
                        Text(f"(was {c.before})", "dim"),
                    ),
                    disabled=True,
                )
            )
        if self.findings:
            lst.highlighted = keep if keep is not None and keep < len(self.findings) else 0
            self._placed = lst.highlighted

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
        parts: list[Text | str] = [mark(f.severity)]
        for c in change_marks.of_kind(self._changes, "finding."):
            if c.finding == f.id and c.where == str(f.where):
                if c.kind == "finding.added":
                    parts.append(Text("NEW", change_marks.STYLE))
                elif c.kind == "finding.regraded":
                    parts.append(Text(f"was {c.before}", change_marks.STYLE))
        parts += [Text(f.id, "bold"), safe_text(str(f.where), "dim"), safe_text(f.summary)]
        return join(*parts)

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
