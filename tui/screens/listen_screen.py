"""The listen screen ("l"): receive test mail from your own sending server and watch it arrive.

It runs the same listener as `mxlens listen` (probes/ownside/listener.py) in a worker. The
sessions list on the left fills in as senders connect; choosing one shows its SMTP/TLS
dialogue in the transcript pane and the client chain it presented in the chain pane (the
panes of the main screen, fed the same events), with the verdict and findings below. The
listener stops when the screen closes (q or ctrl+g).
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from probes.model.errors import CheckError
from probes.model.events import Event, SessionStarted
from probes.model.findings import sort_findings, worst
from probes.model.options import Options
from probes.ownside.listener import ListenOptions, ListenReady, ListenSession, ListenSessionDone
from probes.report import Report

from ..panes import AddrKey, key_of
from ..panes.chain_pane import ChainPane
from ..panes.transcript_pane import TranscriptPane
from ..safe import mark, safe_text

KEYS_HINT = "Up/Down move  1 sessions  2 transcript  3 chain  q/ctrl+g close (stops listening)"


def listen_options_for(options: Options, *, port: int = 2525) -> ListenOptions:
    """The UI listens where `mxlens listen` does by default, with the app's trust store."""
    import socket

    fqdn = socket.getfqdn()
    return ListenOptions(
        address="127.0.0.1",
        port=port,
        hostname=fqdn if "." in fqdn else "mxlens.invalid",
        options=Options(
            ca_file=options.ca_file,
            trust=options.trust,
            expect_name=options.expect_name,
            timeout=max(options.timeout, 30.0),
            resolver=options.resolver,
            private_endpoints=options.private_endpoints,
        ),
    )


def session_label(number: int, peer: str, session: ListenSession | None) -> Text:
    """One line of the sessions list: status word, number, peer, EHLO (network text safe)."""
    status = "running" if session is None else (worst(session.findings) or "ok")
    out = mark(status)
    out.append(f" #{number} ")
    if session is None or not session.ehlo:
        out.append(peer)
    else:
        out.append_text(safe_text(session.ehlo[-1], "bold"))
    return out


def session_summary(session: ListenSession) -> Text:
    out = safe_text(session.verdict, "bold")
    if session.chain:
        out.append("\nclient certificate: ")
        out.append_text(safe_text(session.chain[0].subject))
    elif session.starttls:
        out.append("\nno client certificate")
    for f in sort_findings(session.findings):
        out.append("\n")
        out.append_text(mark(f.severity))
        out.append(f" {f.id}  ")
        out.append_text(safe_text(f.summary))
    return out


class ListenScreen(Screen[None]):
    # 1-3 shadow the app's pane keys while this screen is up: they move the focus here.
    BINDINGS = [
        Binding("q,ctrl+g,escape", "close", "Close", id="listen_close"),
        Binding("1", "focus_part(1)", "Sessions", show=False),
        Binding("2", "focus_part(2)", "Transcript", show=False),
        Binding("3", "focus_part(3)", "Chain", show=False),
    ]
    DEFAULT_CSS = """
    ListenScreen #listen-header { height: 2; }
    ListenScreen #listen-body { height: 1fr; }
    ListenScreen #listen-sessions { width: 32; height: 100%; border: round $secondary; }
    ListenScreen #listen-right { width: 1fr; }
    ListenScreen #listen-verdict { height: auto; max-height: 6; }
    ListenScreen #transcript-side { display: none; }
    ListenScreen #listen-keys { height: 1; color: $text-muted; }
    """

    def __init__(self, opts: ListenOptions) -> None:
        super().__init__()
        self.opts = opts
        self.keys: list[tuple[int, str, AddrKey]] = []  # (number, peer, pane key) by option
        self.done: dict[AddrKey, ListenSession] = {}
        self.ready: ListenReady | None = None
        self.error: str | None = None
        # The panes draw from a store, as on the main screen: each event goes here first.
        self.store = Report("listen", Options())

    def compose(self) -> ComposeResult:
        yield Static(Text("starting the listener ...", "dim"), id="listen-header")
        with Horizontal(id="listen-body"):
            sessions = OptionList(id="listen-sessions")
            sessions.border_title = "Sessions"
            yield sessions
            with Vertical(id="listen-right"):
                transcript = TranscriptPane(id="listen-transcript")
                transcript.report = self.store
                yield transcript
                chain = ChainPane(id="listen-chain")
                chain.report = self.store
                yield chain
                yield Static(Text(""), id="listen-verdict")
        yield Static(Text(KEYS_HINT), id="listen-keys")

    @property
    def transcript(self) -> TranscriptPane:
        return self.query_one("#listen-transcript", TranscriptPane)

    @property
    def chain(self) -> ChainPane:
        return self.query_one("#listen-chain", ChainPane)

    @property
    def sessions(self) -> OptionList:
        return self.query_one("#listen-sessions", OptionList)

    def on_mount(self) -> None:
        # Both panes stay visible and share the height whatever the terminal size (the main
        # screen shows one at a time below 120 columns): this screen has only the two. Inline
        # styles, because the app's stylesheet outranks a screen's DEFAULT_CSS.
        for pane in (self.transcript, self.chain):
            pane.styles.display = "block"
            pane.styles.height = "1fr"
        self.sessions.focus()
        self.run_worker(self._listen(), exclusive=True, group="listen")

    async def _listen(self) -> None:
        from probes.ownside.listener import listen

        try:
            async for event in listen(self.opts):
                self._route(event)
        except CheckError as exc:
            self._failed(f"cannot listen: {exc}")
        except Exception as exc:  # noqa: BLE001 - the screen says it; the app keeps running
            self._failed(f"the listener stopped: {type(exc).__name__}: {exc}")

    def _failed(self, text: str) -> None:
        self.error = text
        self.query_one("#listen-header", Static).update(safe_text(text, "bold red"))

    def _route(self, event: ListenReady | Event | ListenSessionDone) -> None:
        if isinstance(event, ListenReady):
            self.ready = event
            header = Text(f"Listening on {event.address}:{event.port} as ")
            header.append_text(safe_text(event.hostname))
            header.append(": STARTTLS asks for a client certificate; messages are discarded.")
            header.append("\nPoint your sending server (a send connector, relayhost) here.", "dim")
            self.query_one("#listen-header", Static).update(header)
            return
        if isinstance(event, ListenSessionDone):
            session = event.session
            key = key_of(session.where)
            if key is None:
                return
            self.done[key] = session
            for index, (number, peer, k) in enumerate(self.keys):
                if k == key:
                    self.sessions.replace_option_prompt_at_index(
                        index, session_label(number, peer, session)
                    )
            if key == self.transcript.selected:
                self._show_verdict(key)
            return
        self.store.add(event)  # the store first: the panes ask it
        if isinstance(event, SessionStarted):
            key = key_of(event.where)
            if key is not None:
                number = len(self.keys) + 1
                self.keys.append((number, key[1], key))
                self.sessions.add_option(Option(session_label(number, key[1], None)))
                if len(self.keys) == 1:
                    self.sessions.highlighted = 0
                    self._select(key)
        self.transcript.add_event(event)
        self.chain.add_event(event)

    def _select(self, key: AddrKey) -> None:
        self.transcript.show_address(key)
        self.chain.show_address(key)
        self._show_verdict(key)

    def _show_verdict(self, key: AddrKey) -> None:
        session = self.done.get(key)
        body = session_summary(session) if session else Text("session in progress", "dim")
        self.query_one("#listen-verdict", Static).update(body)

    @on(OptionList.OptionHighlighted, "#listen-sessions")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if 0 <= event.option_index < len(self.keys):
            self._select(self.keys[event.option_index][2])

    def action_focus_part(self, number: int) -> None:
        targets = {
            1: self.sessions,
            2: self.transcript.focus_target(),
            3: self.chain.focus_target(),
        }
        targets[number].focus()

    def action_close(self) -> None:
        self.workers.cancel_group(self, "listen")
        self.dismiss(None)
