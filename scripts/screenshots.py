"""Regenerate the SVG screenshots in screenshots/ from the built-in lab (no network needed).

    /work/venv/bin/python scripts/screenshots.py [--out DIR] [--theme NAME]

Each shot opens the UI on one lab domain, waits for the diagnosis to finish, presses the keys
that show the pane (or the walk-through, bounce decoder, connector form) in question, pastes a
text where the shot needs one, and saves an SVG. Addresses (127.N.x.y), times and the temp
CA file name differ from run to run: these are pictures for people, not test snapshots
(those live in tests/__snapshots__/).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual.widgets import TextArea  # noqa: E402

from mxlens_lab.world import Lab, LabThread  # noqa: E402
from tui.app import MxLensApp  # noqa: E402


@dataclass(frozen=True)
class Shot:
    filename: str
    scenario: str
    size: tuple[int, int]
    keys: tuple[str, ...]
    title: str
    paste: str = ""  # typed into the focused text box after the keys (the bounce decoder)


# A real Postfix log line (the text smtp_proto.c logs), naming a lab domain.
POSTFIX_LINE = (
    "Nov 20 10:00:01 relay postfix/smtp[4711]: 4F1A2C3D: to=<bob@no-starttls.lab.test>, "
    "relay=mx1.no-starttls.lab.test[127.0.0.1]:25, delay=1.2, delays=0.1/0/1.1/0, "
    "dsn=4.7.4, status=deferred (TLS is required, but was not offered by host "
    "mx1.no-starttls.lab.test[127.0.0.1])"
)


SHOTS = (
    Shot("healthy.svg", "healthy", (120, 40), ("1",), "mxlens: a healthy domain"),
    Shot(
        "broken-chain.svg",
        "incomplete-chain",
        (120, 40),
        ("3",),
        "mxlens: the server does not send its intermediate",
    ),
    Shot("no-starttls.svg", "no-starttls", (120, 40), ("2",), "mxlens: no STARTTLS offered"),
    Shot(
        "ca-endpoint-failure.svg",
        "ocsp-unreachable",
        (120, 40),
        ("4",),
        "mxlens: an OCSP responder that cannot be reached",
    ),
    Shot(
        "layout-80x24.svg", "expired", (80, 24), ("5",), "mxlens at 80x24: an expired certificate"
    ),
    # "w" opens on the first failing step: no arrow keys needed
    Shot("walkthrough.svg", "expired", (120, 40), ("w",), "mxlens: walk-through, where mail stops"),
    Shot(
        "bounce-decoder.svg",
        "no-starttls",
        (120, 40),
        ("x",),
        "mxlens: the bounce decoder on a Postfix log line",
        paste=POSTFIX_LINE,
    ),
    # third profile: Exchange Online, TlsSettings CertificateValidation
    Shot(
        "connector.svg",
        "expired",
        (120, 40),
        ("o", "down", "down"),
        "mxlens: would an Exchange Online connector deliver?",
    ),
)


async def take(lab: Lab, shot: Shot, out: Path, theme: str, scratch: Path) -> Path:
    app = MxLensApp(
        lab.domain(shot.scenario),
        lab.options(shot.scenario),
        keymap_path=scratch / "no-keys.conf",  # the default keys, whatever the user mapped
        export_dir=scratch,
        theme=theme,
    )
    async with app.run_test(size=shot.size) as pilot:
        for _ in range(600):
            if app.run_id and not app.running:
                break
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        if app.running:
            raise RuntimeError(f"{shot.scenario}: the diagnosis did not finish")
        for key in shot.keys:
            await pilot.press(key)
            await pilot.pause(0.1)
        if shot.paste:
            box = app.focused
            if not isinstance(box, TextArea):
                raise RuntimeError(f"{shot.filename}: no text box has the focus to paste into")
            box.insert(shot.paste)  # an edit, so the decoder runs as on a real paste
        await pilot.pause(0.3)
        app.title = shot.title
        return Path(app.save_screenshot(shot.filename, str(out)))


LISTEN_SHOT = "listen.svg"


def _deliver(port: int, chain: Path, key: Path, ehlo: str) -> None:
    """One message to the listen screen, as a sending MTA with a client certificate does."""
    import smtplib
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(chain), str(key))
    with smtplib.SMTP("127.0.0.1", port, local_hostname=ehlo, timeout=20) as smtp:
        smtp.starttls(context=ctx)
        smtp.ehlo(ehlo)
        smtp.sendmail("postmaster@contoso.test", ["test@partner.test"], b"Subject: t\r\n\r\nhi\r\n")


async def take_listen(lab: Lab, out: Path, theme: str, scratch: Path) -> Path:
    """The listen screen after two senders: one with its full chain, one that forgot the
    intermediate (the hybrid-connector classic), the second one selected."""
    from tui.screens.listen_screen import ListenScreen, listen_options_for

    assert lab.pki is not None
    ca = lab.pki.intermediate("contoso-issuing-ca", lab.root)
    leaf = lab.pki.leaf(ca, ["mail.contoso.test"], eku=["serverAuth", "clientAuth"])
    key = scratch / "client.key"
    key.write_bytes(leaf.key_pem())
    full = scratch / "full.pem"
    full.write_bytes(leaf.pem_chain())
    bare = scratch / "bare.pem"
    bare.write_bytes(leaf.pem_chain(include_intermediates=False))
    app = MxLensApp(
        "healthy.lab.test",
        lab.options("healthy"),
        keymap_path=scratch / "no-keys.conf",
        export_dir=scratch,
        theme=theme,
    )
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(600):
            if app.run_id and not app.running:
                break
            await pilot.pause(0.05)
        screen = ListenScreen(listen_options_for(lab.options("healthy"), port=0))
        await app.push_screen(screen)
        for _ in range(200):
            if screen.ready is not None:
                break
            await pilot.pause(0.05)
        if screen.ready is None:
            raise RuntimeError(f"the listen screen did not start: {screen.error}")
        port = screen.ready.port
        await asyncio.to_thread(_deliver, port, full, key, "mail.contoso.test")
        await asyncio.to_thread(_deliver, port, bare, key, "hybrid.contoso.test")
        for _ in range(200):
            if len(screen.done) == 2:
                break
            await pilot.pause(0.05)
        await pilot.press("down")
        await pilot.pause(0.3)
        app.title = "mxlens: listen, the certificate your own server presents"
        return Path(app.save_screenshot(LISTEN_SHOT, str(out)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    parser.add_argument("--theme", default="ansi-dark", help="Textual theme (default ansi-dark)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    scenarios = sorted({s.scenario for s in SHOTS})
    with LabThread(scenarios) as lab, tempfile.TemporaryDirectory() as scratch:
        for shot in SHOTS:
            path = asyncio.run(take(lab, shot, args.out, args.theme, Path(scratch)))
            print(f"{path}  ({shot.scenario}, {shot.size[0]}x{shot.size[1]})")
        path = asyncio.run(take_listen(lab, args.out, args.theme, Path(scratch)))
        print(f"{path}  (listen screen, 120x40)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
