"""The mxlens terminal UI: five panes fed by one diagnosis stream.

A worker runs the event source (`probes.diagnose.diagnose`, or any function with its
signature, such as the tests' `tests.support.fake_stream.fake_diagnose`) and posts each event to the
app as a message; the app hands it to every pane and keeps selection in one place. The worker
never touches a widget, so a slow or cancelled run cannot leave the screen half-updated.

Made for helpdesk engineers on a jump host over SSH: usable at 80x24 (one pane at a time,
switched with 1-5 or Tab), on 16-colour terminals and with NO_COLOR (every status is a word
too), without a mouse and without Esc.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rich.text import Text
from textual import events, on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.command import CommandPalette, DiscoveryHit, Hit, Hits, Provider
from textual.containers import Container
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input, Static
from textual.worker import Worker

from probes.model.errors import CheckError
from probes.model.events import (
    ChainReceived,
    ChainValidated,
    DiagnosisFinished,
    Event,
    Evidence,
    Where,
    evidence_of,
)
from probes.model.findings import sort_findings
from probes.model.options import Options
from probes.model.safetext import visible
from probes.report import Report

from .keymap import ACTIONS, bindings, display_key, keys_for, load_keymap
from .panes import AddrKey, Pane
from .panes.chain_pane import ChainPane
from .panes.domain_pane import DomainPane
from .panes.endpoints_pane import EndpointsPane
from .panes.findings_bar import FindingsBar
from .panes.transcript_pane import TranscriptPane
from .safe import join, mark, safe_text
from .screens.help_screen import HelpScreen
from .screens.target_prompt import TargetPrompt
from .widgets.key_bar import KeyBar

if TYPE_CHECKING:
    from mxlens_lab.world import Lab
    from probes.history.diff import RunDiff
    from probes.interpret.explain import Explanation

Source = Callable[[str, Options], AsyncIterator[Event]]
PANE_COUNT = 5
# A notice that repeats what the screen keeps (the kept connector stays in the top line, a
# saved path in `last_export`) goes after this long: at 80x24 it sits over pane 5's why/fix.
NOTICE_SECONDS = 5


def shown_path(path: Path) -> str:
    """A path as short as it can be said: ~ for the home directory."""
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


# The pane that shows the evidence of a finding-id prefix or of a walk step (probes.interpret.walk.STEPS);
# everything else (dns, mtasts, tlsrpt, pool, the MX and address steps) is in pane 1.
_PANE_OF: dict[str, int] = {
    "smtp": 2,
    "tls": 2,
    "cert": 3,
    "dane": 3,  # the finding prefix and the walk step
    "ca": 4,
    "connect": 2,
    "greeting": 2,
    "ehlo": 2,
    "starttls_offered": 2,
    "starttls_accepted": 2,
    "handshake": 2,
    "chain_trusted": 3,
    "name_match": 3,
    "revocation": 4,
}


def pane_for(finding_id_or_step: str) -> int:
    """The pane (1-5) for a finding id ("cert.expired"), its prefix ("cert") or a walk step
    name ("chain_trusted")."""
    return _PANE_OF.get(finding_id_or_step, _PANE_OF.get(finding_id_or_step.split(".", 1)[0], 1))


class MxLensCommands(Provider):
    """Every mxlens action in the command palette (ctrl+p), with the key it is on."""

    def _entries(self) -> list[tuple[str, str, str]]:
        app = self.app
        keymap = app.keymap if isinstance(app, MxLensApp) else {}
        out = []
        for a in ACTIONS:
            key = display_key(keys_for(a.id, keymap))
            out.append((f"{a.label} ({key})", a.help, a.action))
        return out

    async def discover(self) -> Hits:
        for name, help_text, action in self._entries():
            yield DiscoveryHit(
                Text(name), partial(self.app.run_action, action), text=name, help=help_text
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, action in self._entries():
            score = max(matcher.match(name), matcher.match(help_text) * 0.8)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(name),
                    partial(self.app.run_action, action),
                    text=name,
                    help=help_text,
                )


class Palette(CommandPalette):
    """Textual's command palette, closed by ctrl+g as well as Esc, like every mxlens dialog
    (Esc is unreliable over some SSH links; q would type into its search box)."""

    BINDINGS = [Binding("ctrl+g", "escape", "Close", show=False)]


def _default_theme() -> str:
    """Truecolour terminals get Textual's theme; everything else the terminal's own 16 colours."""
    chosen = os.environ.get("MXLENS_THEME")
    if chosen:
        return chosen
    if "NO_COLOR" in os.environ:
        return "ansi-dark"  # the terminal's own default colours, with reverse for the cursor
    if os.environ.get("COLORTERM", "").lower() in ("truecolor", "24bit"):
        return "textual-dark"
    return "ansi-dark"


class MainScreen(Screen[None]):
    """The screen with the five panes. It notes every key that bubbles up through it, so
    the app can tell keys typed for this screen from those of a dialog (`MxLensApp.on_key`)."""

    def on_key(self, event: events.Key) -> None:
        app = self.app
        if isinstance(app, MxLensApp):
            app._main_keys.append(event)


class PaneBar(Static):
    """The top line: the pane keys (always visible, even at 80 columns) and the run status."""


class MxLensApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "mxlens"
    BINDINGS = [*bindings(), Binding("A", "audit", "Audit", show=False)]
    COMMANDS = App.COMMANDS | {MxLensCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]

    class EventArrived(Message):
        def __init__(self, run: int, event: Event) -> None:
            super().__init__()
            self.run = run
            self.event = event

    class RunEnded(Message):
        def __init__(self, run: int, error: str | None, cancelled: bool) -> None:
            super().__init__()
            self.run = run
            self.error = error
            self.cancelled = cancelled

    def __init__(
        self,
        target: str | None,
        options: Options,
        *,
        source: Source | None = None,
        lab: bool = False,
        keymap_path: Path | None = None,
        export_dir: Path | None = None,
        theme: str | None = None,
        audit_screen: Screen[Any] | None = None,
        history: bool = True,
    ) -> None:
        # Textual picks its NO_COLOR filter in __init__, from the theme current then: with its
        # truecolour default that is a greyscale filter, which a 16-colour terminal renders as
        # black on black once our ANSI theme is set. ansi_color=True selects the filter that
        # just drops colours (terminal default foreground and background).
        super().__init__(ansi_color=True if "NO_COLOR" in os.environ else None)
        self.target = target.strip() if target and target.strip() else None
        self.options = options
        self.user_options = options  # what the user asked for; the lab adds its plumbing
        self._source = source
        self._lab_mode = lab
        self._lab: Lab | None = None
        self._keymap_path = keymap_path
        self._export_dir = export_dir
        self._theme_name = theme or _default_theme()
        self.keymap: dict[str, str] = {}
        self.run_id = 0
        self.running = False
        self.cancelled = False
        self.finished: DiagnosisFinished | None = None
        self.error: str | None = None
        self.selected: AddrKey | None = None
        self.active_pane = 1
        self._worker: Worker[None] | None = None
        self.last_export: Path | None = None
        self.report: Report | None = None  # the run's events, for the walk, connectors, tickets
        self.connector: Any = None  # the ConnectorResult the user kept in the connector form
        self.walk_when_done = False
        self._main_keys: list[events.Key] = []  # keys on their way up from the main screen
        self._audit_screen = audit_screen  # `mxlens audit FILE`: tui/screens/audit_screen.py
        self.history = history  # record finished runs (--no-history: False)
        self.changes: RunDiff | None = None  # what changed since the last recorded check
        self._started: datetime | None = None
        if "NO_COLOR" in os.environ:
            self.add_class("-no-color")  # app.tcss marks cursors in reverse instead

    # ------------------------------------------------------------------ layout

    def action_command_palette(self) -> None:
        if self.use_command_palette and not any(
            isinstance(screen, CommandPalette) for screen in self.screen_stack
        ):
            self.push_screen(Palette(id="--command-palette"))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Textual's own palette entries, less the two that mxlens does better: its Quit
        cancels a running diagnosis first, and its help (?) explains every pane and key."""
        for command in super().get_system_commands(screen):
            if command.title not in ("Quit", "Keys"):
                yield command

    def compose(self) -> ComposeResult:
        yield PaneBar(id="pane-bar")
        with Container(id="panes"):
            yield DomainPane(id="pane-1")
            yield TranscriptPane(id="pane-2")
            yield ChainPane(id="pane-3")
            yield EndpointsPane(id="pane-4")
            yield FindingsBar(id="pane-5")
        yield KeyBar(id="key-bar")

    def _panes_alive(self) -> bool:
        """False while the app shuts down: messages still queued must not touch the panes."""
        try:
            self.query_one("#pane-1", Pane)
        except NoMatches:
            return False
        return True

    def pane(self, number: int) -> Pane:
        return self.query_one(f"#pane-{number}", Pane)

    @property
    def domain_pane(self) -> DomainPane:
        return self.query_one(DomainPane)

    @property
    def transcript_pane(self) -> TranscriptPane:
        return self.query_one(TranscriptPane)

    @property
    def chain_pane(self) -> ChainPane:
        return self.query_one(ChainPane)

    @property
    def endpoints_pane(self) -> EndpointsPane:
        return self.query_one(EndpointsPane)

    @property
    def findings_bar(self) -> FindingsBar:
        return self.query_one(FindingsBar)

    async def on_mount(self) -> None:
        self._end_on_signals()
        try:
            self.theme = self._theme_name
        except Exception:  # an unknown MXLENS_THEME: keep Textual's default
            self.notify(
                visible(f"unknown theme {self._theme_name!r}"), severity="warning", markup=False
            )
        self.keymap, warning = load_keymap(self._keymap_path)
        if self.keymap:
            self.set_keymap(self.keymap)
        if warning:
            self.notify(warning, severity="warning", markup=False, timeout=10)
        self.set_active_pane(1)
        if self._audit_screen is not None:
            self.install_screen(self._audit_screen, name="audit")
            self.push_screen("audit")
        elif self._lab_mode:
            self.run_worker(self._start_lab(), group="lab", exit_on_error=False)
        elif self.target:
            self.start(self.target)
        else:
            self.call_after_refresh(self.action_new_target)
        self._render_bar()

    async def on_unmount(self) -> None:
        await self._stop_lab()

    def _end_on_signals(self) -> None:
        """SIGTERM (kill, a service manager), SIGHUP (the SSH session dropped) and an outside
        SIGINT end the UI as `q` does, so Textual restores the terminal: alternate screen
        and mouse tracking off, the tty out of raw mode. Python's default for SIGTERM and
        SIGHUP kills the process with the screen as it was."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._end_on_signal, sig)

    def _end_on_signal(self, sig: signal.Signals) -> None:
        self._cancel_worker()
        self.exit(return_code=128 + int(sig))  # the shell's convention: 143 for SIGTERM

    # ------------------------------------------------------------------ the lab

    async def _start_lab(self) -> None:
        try:
            from mxlens_lab.world import Lab  # imported here: the lab pulls the PKI and servers

            lab = Lab()
            await lab.start()
        except Exception as exc:
            self.notify(visible(f"the lab did not start: {exc}"), severity="error", markup=False)
            return
        self._lab = lab
        target = self.target
        if not target:
            try:
                target = lab.domain(next(iter(lab.scenarios)))
            except Exception:
                target = "healthy.lab.test"
        self.options = self._lab_options(target)
        self.start(target)

    def _lab_options(self, target: str) -> Options:
        """The lab's plumbing and the scenario's own options, then what the user set."""
        assert self._lab is not None
        options: Options = self._lab.options_for(target, self.user_options)
        return options

    async def _stop_lab(self) -> None:
        lab, self._lab = self._lab, None
        if lab is not None:
            try:
                await asyncio.wait_for(lab.stop(), timeout=5.0)
            except Exception:
                pass

    # ------------------------------------------------------------------ running

    def _get_source(self) -> Source:
        if self._source is None:
            # Imported on first use, so the UI draws before the DNS/TLS stack is loaded.
            from probes.diagnose import diagnose

            self._source = diagnose
        return self._source

    def start(self, target: str, options: Options | None = None) -> None:
        """Forget the last run and diagnose target, with `options` when given (complete:
        lab plumbing included), else with the user's options (plus the lab's, in lab mode)."""
        self._cancel_worker()
        if options is not None:
            self.options = options
        elif self._lab is not None:
            self.options = self._lab_options(target)
        else:
            self.options = self.user_options
        if self.run_id:
            # Toasts about the last run (a connector verdict, a saved file) would sit over
            # the new domain's panes as if they were about it. (Not on the first run: a key
            # file or theme warning from start-up must stay readable.)
            self.clear_notifications()
        self.run_id += 1
        self.target = target
        self.running = True
        self.cancelled = False
        self.finished = None
        self.error = None
        self.selected = None
        self.report = Report(target, self.options)
        self.connector = None
        self.changes = None
        self._started = datetime.now(timezone.utc)
        for n in range(1, PANE_COUNT + 1):
            self.pane(n).report = self.report
            self.pane(n).reset()
        self.domain_pane.start(target)
        self._render_bar()
        self.refresh_bindings()
        self._worker = self.run_worker(
            self._diagnose(self.run_id, target, self.options),
            group="diagnosis",
            exclusive=True,
            exit_on_error=False,
        )

    async def _diagnose(self, run: int, target: str, options: Options) -> None:
        """The worker: stream events to the app; never touch widgets from here."""
        error: str | None = None
        cancelled = False
        agen: AsyncIterator[Event] | None = None
        try:
            agen = self._get_source()(target, options)
            async for event in agen:
                self.post_message(self.EventArrived(run, event))
        except asyncio.CancelledError:
            cancelled = True
            raise
        except CheckError as exc:
            error = str(exc)
        except Exception as exc:  # one handler for every engine failure: show it, keep the UI
            error = f"internal error: {exc.__class__.__name__}: {exc}"
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                try:
                    await asyncio.wait_for(aclose(), timeout=5.0)
                except BaseException:  # noqa: BLE001 - closing must not mask the real outcome
                    pass
            self.post_message(self.RunEnded(run, error, cancelled))

    def _cancel_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None and not worker.is_finished:
            worker.cancel()

    @on(EventArrived)
    def _on_event(self, message: EventArrived) -> None:
        if message.run != self.run_id or not self._panes_alive():
            return  # a straggler from a cancelled or replaced run, or the app is closing
        event = message.event
        if self.report is not None:
            self.report.add(event)  # the store first: the panes ask it
        for n in range(1, PANE_COUNT + 1):
            self.pane(n).add_event(event)
        if isinstance(event, (ChainReceived, ChainValidated)) and self.selected is not None:
            if (event.where.host, event.where.address) == self.selected:
                self.endpoints_pane.show_address(self.selected)  # endpoints found by chain
        if isinstance(event, DiagnosisFinished):
            self.finished = event
            if event.error:
                self.error = event.error
        self._render_bar()

    @on(RunEnded)
    def _on_run_ended(self, message: RunEnded) -> None:
        if message.run != self.run_id or not self._panes_alive():
            return
        self.running = False
        if message.error:
            self.error = message.error
            self.domain_pane.mark_failed(message.error)
            self.findings_bar.show_error(message.error)
            self.set_active_pane(5)  # the only pane with room for the whole message
            self.notify(
                visible(message.error), title="Could not check", severity="error", markup=False
            )
        if message.cancelled or (self.finished is None and not message.error):
            self.cancelled = True
            self.domain_pane.mark_cancelled()
        self.transcript_pane.run_ended(self.cancelled)
        if self.history and self.finished is not None and not self.cancelled and not self.error:
            self._record(message.run)
        self._render_bar()
        self.refresh_bindings()
        if self.walk_when_done and self.finished is not None:
            self.walk_when_done = False  # `mxlens demo --walk`: once, on the first finished run
            self.action_walk()

    # ------------------------------------------------------------------ history

    def _record(self, run: int) -> None:
        """Record the finished run in the history, off the UI thread (another mxlens may hold
        the database for a moment), then mark what changed since the last check."""
        report, started = self.report, self._started
        if report is None or started is None:
            return

        async def record() -> None:
            from probes.history.record import record_report

            result = await asyncio.to_thread(record_report, report, started, source="ui")
            if run != self.run_id or not self._panes_alive():
                return
            for line in result.notices:
                self.notify(visible(line), title="History", severity="warning", markup=False)
            if result.run_id is None:
                self.notify(
                    visible(f"This check was not recorded in the history: {result.error}"),
                    title="History",
                    severity="warning",
                    markup=False,
                )
                return
            self.changes = result.diff
            for pane in (self.domain_pane, self.chain_pane, self.findings_bar):
                pane.mark_changes(result.diff)

        self.run_worker(record(), group="history", exit_on_error=False)

    def action_history(self) -> None:
        """Two recorded runs of this domain side by side, and what changed between them."""
        from .screens.history_screen import HistoryScreen

        if not self.target:
            self.notify(
                f"Check a domain first ({display_key(keys_for('new_target', self.keymap))}).",
                markup=False,
            )
            return
        domain = self.report.target_ascii if self.report and self.report.target_ascii else None
        self.push_screen(HistoryScreen(domain or self.target))

    # ------------------------------------------------------------------ selection

    @on(DomainPane.AddressChosen)
    def _on_address_chosen(self, message: DomainPane.AddressChosen) -> None:
        self.select_address(message.key)

    def select_address(self, key: AddrKey) -> None:
        """Point panes 2-4 at one MX address."""
        if key == self.selected:
            return
        self.selected = key
        self.domain_pane.selected = key
        self.transcript_pane.show_address(key)
        self.chain_pane.show_address(key)
        self.endpoints_pane.show_address(key)

    @on(FindingsBar.Jump)
    def _on_jump(self, message: FindingsBar.Jump) -> None:
        finding = message.finding
        self.jump(finding.where, finding.evidence, finding.id)

    def jump(self, where: Where, refs: Sequence[Evidence | str], about: str) -> None:
        """Show evidence: choose the address of `where`, then the pane and line of the first
        usable reference (a finding's Evidence, or a walk step's refs in their text form);
        without one, the pane of `about` (a finding id or a walk step name, see `pane_for`)."""
        if where.address is not None:
            key = (where.host, where.address)
            if key != self.selected:
                self.domain_pane.choose(key)
                self.select_address(key)
        for evidence in evidence_of(refs):
            if evidence.kind == "transcript" and evidence.index is not None:
                self.set_active_pane(2)
                if not self.transcript_pane.jump(evidence.index):
                    self.notify("that line is not in the transcript shown", markup=False)
                return
            if evidence.kind == "cert" and evidence.index is not None:
                self.set_active_pane(3)
                self.chain_pane.jump(evidence.index)
                return
            if evidence.kind == "endpoint" and evidence.url:
                self.set_active_pane(4)
                if not self.endpoints_pane.jump(evidence.url):
                    # The URL belongs to another chain: show every endpoint instead.
                    self.endpoints_pane.show_address(self.selected, everything=True)
                    self.endpoints_pane.jump(evidence.url)
                return
        target = pane_for(about)
        if target == 3:
            self.chain_pane.jump(0)
        self.set_active_pane(target)

    # ------------------------------------------------------------------ panes

    def set_active_pane(self, number: int) -> None:
        self._mark_active(number)
        self.pane(number).focus_target().focus()

    def _mark_active(self, number: int) -> None:
        self.active_pane = number
        for n in range(1, PANE_COUNT + 1):
            self.pane(n).set_class(n == number, "-active")
        # the grid gives the findings strip more rows while it is the active pane
        self.query_one("#panes").set_class(number == PANE_COUNT, "-findings")
        self._render_bar()

    def on_descendant_focus(self, event: Any) -> None:
        node = event.widget if hasattr(event, "widget") else None
        while node is not None and not isinstance(node, Pane):
            node = node.parent
        if isinstance(node, Pane) and node.number != self.active_pane:
            self._mark_active(node.number)

    def on_resize(self) -> None:
        self._render_bar()

    def get_default_screen(self) -> Screen[Any]:
        return MainScreen(id="_default")

    def on_key(self, event: events.Key) -> None:
        """Type-ahead: keys typed in one burst with the key that opens a dialog.

        A paste over SSH (`/name.example` Enter) arrives as keys queued back to back on the
        main screen's focused widget; by the time they bubble up here the `/` has opened the
        prompt. The app then checks them against the dialog's bindings (Enter submits, ctrl+u
        clears), but nobody typed the characters: they were lost, or ran a main-screen binding
        (`q` quit). Here, in their order, they go into the dialog's text field."""
        if not any(queued is event for queued in self._main_keys):
            return
        self._main_keys = [queued for queued in self._main_keys if queued is not event]
        if self.screen is self.screen_stack[0] or not event.is_printable:
            return  # the main screen's own key, or one the dialog's bindings take
        field = self.screen.focused
        if not isinstance(field, Input) or event.character is None:
            return
        event.stop()
        event.prevent_default()
        selection = field.selection
        if selection.is_empty:
            field.insert_text_at_cursor(event.character)
        else:  # the pre-filled target is selected: typing replaces it
            field.replace(event.character, *selection)

    def _render_bar(self) -> None:
        try:
            bar = self.query_one(PaneBar)
        except Exception:
            return
        status = self._status_text()
        if self.target:
            status.append(" ")
            status.append(safe_text(self.target, "bold"))
        if self.connector is not None and not self.running:
            # The kept connector verdict stays in sight after its notice fades: `w` and `m`
            # use it, so the user must see which sender the screens are judged for.
            kept = self.connector
            status.append(" | ")
            status.append(mark("ok" if kept.delivers else "error"))
            status.append(f" as {kept.profile.name}")
        # The verdict matters more than the pane names: when the line is too narrow for
        # every name, only the active pane keeps its name (the footer lists the keys).
        width = self.size.width
        for full in (True, False):
            out = join(self._pane_tabs(full), Text(" | ", "dim"), status, sep="")
            if out.cell_len <= width:
                break
        bar.update(out)
        self.query_one(KeyBar).update_keys(self.keymap, self._action_enabled)

    def _action_enabled(self, action: str) -> bool:
        if action == "cancel":
            return self.running
        if action == "rerun":
            return bool(self.target)
        return True

    def _pane_tabs(self, full: bool) -> Text:
        parts: list[Text | str] = []
        for n in range(1, PANE_COUNT + 1):
            key = display_key(keys_for(f"pane_{n}", self.keymap))
            label = f"{key} {self.pane(n).pane_title}"
            if n == self.active_pane:
                parts.append(Text(f">{label}<", "reverse bold"))
            else:
                parts.append(Text(f" {label} " if full else f" {key}"))
        return join(*parts, sep="")

    def _status_text(self) -> Text:
        """The run's state in words: running, cancelled, could not check, or the counts."""
        if self.running:
            return join(mark("running"), Text("running, c = cancel"))
        if self.error:
            return join(mark("error"), Text("could not check"))
        if self.cancelled:
            return join(mark("cancelled"), Text("cancelled, r = rerun"))
        if self.finished is not None and self.report is not None:
            # The cause first (the worst finding), then how many more: a count alone sent
            # every user to pane 5 to learn what is wrong.
            found = sort_findings(self.report.findings)
            worst = next((f for f in found if f.severity in ("error", "warning")), None)
            if worst is None:
                return join(mark("ok"), Text("no problems"))
            counts: dict[str, int] = {}
            for f in found:
                counts[f.severity] = counts.get(f.severity, 0) + 1
            counts[worst.severity] -= 1
            more = [
                Text(f"+{counts[s]} {w}", style)
                for s, w, style in (
                    ("error", "FAIL", "bold red"),
                    ("warning", "WARN", "bold yellow"),
                )
                if counts.get(s)
            ]
            return join(mark(worst.severity), Text(worst.id, "bold"), *more)
        return Text("press / to enter a domain", "dim")

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Priority keys (Tab, ctrl+c) must reach inputs and dialogs when one is open.
        if action in ("next_pane", "prev_pane", "interrupt") and self.screen.is_modal:
            return False
        if action == "cancel" and not self.running:
            return None  # shown greyed out in the footer
        if action == "rerun" and not self.target:
            return None
        if action == "audit":
            return self._audit_screen is not None and self.screen is not self._audit_screen
        return True

    def open_from_audit(self, domain: str, options: Options) -> None:
        """Enter on an audit row: that domain's diagnosis in the panes (Shift+A goes back)."""
        if self.screen is self._audit_screen:
            self.pop_screen()
        self.start(domain, options)

    def action_audit(self) -> None:
        if self._audit_screen is not None and self.screen is not self._audit_screen:
            self.push_screen("audit")

    def action_pane(self, number: int) -> None:
        if 1 <= number <= PANE_COUNT:
            self.set_active_pane(number)

    def action_next_pane(self) -> None:
        self.set_active_pane(self.active_pane % PANE_COUNT + 1)

    def action_prev_pane(self) -> None:
        self.set_active_pane((self.active_pane - 2) % PANE_COUNT + 1)

    def action_new_target(self) -> None:
        def chosen(value: str | None) -> None:
            if value:
                self.start(value)

        self.push_screen(TargetPrompt(self.target, self._lab_choices()), chosen)

    def _lab_choices(self) -> list[tuple[str, str]]:
        """The lab's domains and what each breaks, for the `/` prompt (none outside the lab)."""
        if not self._lab_mode:
            return []
        if self._lab is not None:
            scenarios = self._lab.scenarios
        else:  # still starting: it will serve every scenario
            from mxlens_lab.scenarios import SCENARIOS as scenarios
        return [(s.domain, s.description) for s in scenarios.values()]

    def action_explain(self) -> None:
        """The bounce decoder: paste a text, read its decoding, check what it names."""
        from .screens.explain_prompt import ExplainPrompt

        self.push_screen(ExplainPrompt(), self.start_explained)

    def start_explained(self, explanation: Explanation | None) -> None:
        """Check what a bounce names, as `mxlens explain --run` does: the recipient domain
        through the host the bounce names (`--mx host`), unless the user gave --mx."""
        from probes.interpret.explain import check_options

        if explanation is None:
            return
        try:
            domain, options = check_options(explanation, self.user_options)
            if self._lab is not None:
                # the lab's plumbing for that domain first, then the named host on top
                domain, options = check_options(explanation, self._lab_options(domain))
        except CheckError as exc:
            self.notify(visible(str(exc)), title="Could not check", severity="error", markup=False)
            return
        self.start(domain, options)
        hosts = [o.host for o in options.mx if o.host != domain]
        if hosts:
            self.notify(visible(f"Checking {domain} via {' '.join(hosts)} only."), markup=False)

    def action_rerun(self) -> None:
        if self.target:
            self.start(self.target, self.options)  # the same check again (a bounce's --mx too)
        else:
            self.action_new_target()

    def action_cancel(self) -> None:
        if self.running:
            self._cancel_worker()
            self.notify("Diagnosis cancelled.", markup=False)

    def action_interrupt(self) -> None:
        """ctrl+c: stop a running diagnosis cleanly; when nothing runs, quit."""
        if self.running:
            self._cancel_worker()
            quit_key = display_key(keys_for("quit", self.keymap))
            self.notify(
                f"Diagnosis cancelled. Press {quit_key} (or ctrl+c again) to quit.", markup=False
            )
        else:
            self.exit(0)

    async def action_quit(self) -> None:
        self._cancel_worker()
        self.exit(0)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.keymap))

    def action_listen(self) -> None:
        from .screens.listen_screen import ListenScreen, listen_options_for

        self.push_screen(ListenScreen(listen_options_for(self.user_options)))

    def action_side_probes(self) -> None:
        self.transcript_pane.toggle_side()

    def action_firewall(self) -> None:
        """Copy the CA endpoints' host:port list (OSC 52) and save it to a file."""
        lines = self.report.firewall_list() if self.report is not None else []
        if not lines:
            self.notify("No CA endpoints known yet: nothing to copy.", markup=False)
            return
        text = "\n".join(lines) + "\n"
        self.copy_to_clipboard(text)
        from probes.interpret.ticket import export_dir, file_stem

        directory = self._export_dir or export_dir()
        path = directory / f"firewall-{file_stem(self.target or 'mxlens')}.txt"
        header = f"# outbound HTTP(S) to allow for CA endpoints (OCSP, CRL, caIssuers) of {self.target}\n"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            path.write_text(header + text, "utf-8")
        except OSError as exc:
            self.notify(
                f"Copied {len(lines)} host:port entries; could not write {path}: {exc.strerror}",
                severity="warning",
                markup=False,
            )
            return
        self.last_export = path
        self.notify(
            f"Copied {len(lines)} host:port entries (all MX) and saved them to {shown_path(path)}",
            title="Firewall list",
            markup=False,
            timeout=NOTICE_SECONDS,
        )

    # ------------------------------------------------------------------ walk, connector, ticket

    def _finished_report(self, what: str) -> Report | None:
        """The report of a finished run, else None after telling the user why `what` (the
        walk-through, the connector check, the ticket report) cannot be made yet."""
        if self.report is not None and self.finished is not None:
            return self.report
        rerun = display_key(keys_for("rerun", self.keymap))
        if self.running:
            why = "wait for the diagnosis to finish"
        elif self.target:
            why = f"this run did not finish; press {rerun} to run it again"
        else:
            why = f"check a domain first ({display_key(keys_for('new_target', self.keymap))})"
        self.notify(f"{what} needs a finished diagnosis: {why}.", markup=False)
        return None

    def action_walk(self) -> None:
        """Open the walk-through; Enter on a step jumps to its evidence."""
        from probes.interpret.walk import WalkStep

        from .screens.walk_screen import WalkScreen

        report = self._finished_report("The walk-through")
        if report is None:
            return
        walk = self.connector.walk if self.connector is not None else None
        if walk is None:
            from probes.interpret.walk import build_walk

            walk = build_walk(report)

        def chosen(step: WalkStep | None) -> None:
            if step is None:
                return
            self.jump(step.where or Where(self.target or ""), step.refs, step.name)

        heading = self.connector.verdict if self.connector is not None else None
        self.push_screen(WalkScreen(walk, heading=heading), chosen)

    def action_connector(self) -> None:
        """Pick a connector profile and see its verdict (re-grades, no new probe)."""
        from .screens.connector_form import ConnectorForm

        report = self._finished_report("The connector check")
        if report is None:
            return

        def kept(result: Any) -> None:
            if result is not None:
                self.connector = result
            self.apply_grading()  # the kept profile again, also when the form was left
            if result is not None:
                self.notify(
                    visible(result.verdict),
                    title=result.profile.name,
                    markup=False,
                    timeout=NOTICE_SECONDS,
                )

        current = self.connector.profile.name if self.connector is not None else None
        report.regrade(None)  # the form judges every profile from the run's own grading
        self.push_screen(ConnectorForm(report, profile=current), kept)

    def apply_grading(self) -> None:
        """Grade the store for the kept connector (or the run's policy), and let every view
        follow: findings, address marks, policy rows, chain marks, the top line; the walk
        and the ticket read the kept connector too."""
        if self.report is None:
            return
        self.report.regrade(self.connector.findings if self.connector is not None else None)
        self.findings_bar.show_findings(self.report.findings)
        self.domain_pane.regraded()
        self.chain_pane.regraded()
        self._render_bar()

    def action_ticket(self, fmt: str = "md") -> None:
        """Copy the ticket report (Markdown, or plain text with fmt "text") with OSC 52 and
        save it where the path is shown."""
        from probes.interpret.ticket import export_dir, render, save_ticket, ticket_path

        report = self._finished_report("The ticket report")
        if report is None:
            return
        kind: Literal["md", "text"] = "text" if fmt == "text" else "md"
        text = render(report, kind, connector=self.connector, changes=self.changes)
        self.copy_to_clipboard(text)
        path = ticket_path(report.target, kind, self._export_dir or export_dir())
        what = "Markdown" if kind == "md" else "plain text"
        try:
            save_ticket(text, path)
        except OSError as exc:
            self.notify(
                f"Copied the ticket report ({what}); could not write {path}: {exc.strerror}",
                severity="warning",
                markup=False,
            )
            return
        self.last_export = path
        self.notify(
            f"Copied the ticket report ({what}) and saved it to {shown_path(path)}",
            title="Ticket",
            markup=False,
            timeout=NOTICE_SECONDS,
        )


def run_app(
    target: str | None,
    options: Options,
    *,
    lab: bool = False,
    walk: bool = False,
    history: bool = True,
) -> int:
    """Create and run the UI; returns the app's exit code (0 unless something failed)."""
    app = MxLensApp(target, options, lab=lab, history=history)
    app.walk_when_done = walk
    result = app.run()
    return int(result or 0) if app.return_code is None else app.return_code
