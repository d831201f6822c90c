"""The listen screen ("l"): sessions arrive while it is open; transcript and chain panes show
the chosen one; q closes it and stops the listener."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU
from textual.pilot import Pilot

from probes.model.options import Options
from tests.support.ownside import Pki, send
from tests.support.pki import issue
from tests.support.ui import SMALL, make_app, screen_text
from tui.screens.listen_screen import ListenScreen, listen_options_for

pytestmark = pytest.mark.ui


async def _wait(pilot: Pilot[Any], condition: Callable[[], object], what: str) -> None:
    for _ in range(400):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_session_arrives_and_shows_in_both_panes(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    leaf = issue("mail.contoso.test", pki.inter, eku=(EKU.SERVER_AUTH, EKU.CLIENT_AUTH))
    files = pki.client_files(leaf, intermediate=False)
    app = make_app(tmp_path, "example.org", Options(ca_file=str(pki.roots)))
    async with app.run_test(size=SMALL) as pilot:
        screen = ListenScreen(listen_options_for(app.user_options, port=0))
        await app.push_screen(screen)
        await _wait(pilot, lambda: screen.ready is not None, "the listener")
        assert screen.ready is not None
        port = screen.ready.port
        reply = asyncio.ensure_future(asyncio.to_thread(send, port, files=files))
        await _wait(pilot, lambda: screen.done, "the session to end")
        assert (await reply).startswith("250 2.0.0 message discarded")
        await pilot.pause(0.2)
        text = screen_text(app)
        assert f"Listening on 127.0.0.1:{port}" in text
        assert "FAIL #1 mail.contoso.test" in text
        assert "cert.untrusted" in text  # the leaf came without its intermediate
        assert "CN=mail.contoso.test" in text
        lines = screen.store.dialogue("session 1", "127.0.0.1")
        shown = [getattr(e, "text", "").upper() for e in lines]
        assert "EHLO MAIL.CONTOSO.TEST" in shown and "QUIT" in shown
        assert screen.chain.path(("session 1", "127.0.0.1"))[0].cert.common_name == (
            "mail.contoso.test"
        )
        await pilot.press("3")
        assert app.focused is screen.chain.focus_target()
        await pilot.press("2")
        assert app.focused is screen.transcript.focus_target()
        await pilot.press("1")
        assert app.focused is screen.sessions
        await pilot.press("q")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ListenScreen)
    # The listener is gone with the screen: nothing accepts on its port any more.
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


async def test_l_opens_the_screen_and_a_busy_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        app = make_app(tmp_path)
        async with app.run_test(size=SMALL) as pilot:
            screen = ListenScreen(listen_options_for(app.user_options, port=busy))
            await app.push_screen(screen)
            await _wait(pilot, lambda: screen.error is not None, "the bind error")
            assert f"cannot listen: cannot listen on 127.0.0.1:{busy}" in screen_text(app)
            await pilot.press("ctrl+g")
            await pilot.pause(0.1)
            assert not isinstance(app.screen, ListenScreen)
            await pilot.press("l")
            await pilot.pause(0.3)
            assert isinstance(app.screen, ListenScreen)
            await pilot.press("q")
