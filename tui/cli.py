"""The `mxlens` command line: the UI, `check`, `lab` and `demo`.

This module must stay light: the headless commands never import Textual (a test guards it),
so `mxlens check` starts fast on a jump host. The UI is imported only when it is opened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from probes.model.errors import CheckError
from probes.model.options import POLICIES, MxOverride, Options

if TYPE_CHECKING:
    from probes.history.diff import RunDiff

EXIT_BAD_INPUT = 3
COMMANDS = (
    "check",
    "lab",
    "demo",
    "explain",
    "history",
    "diff",
    "watch",
    "audit",
    "listen",
    "cert",
)
# Commands whose parser and handler live in their own module (tui/commands/).
_COMMAND_MODULES = {
    "history": "tui.commands.history",
    "diff": "tui.commands.diff",
    "watch": "tui.commands.watch",
    "audit": "tui.commands.audit",
    "listen": "tui.commands.listen",
    "cert": "tui.commands.cert",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but bad flags exit 3 with one line (docs/cli.md), not 2 with a usage dump."""

    def error(self, message: str) -> NoReturn:
        from probes.model.safetext import visible

        self.exit(EXIT_BAD_INPUT, f"mxlens: {visible(message)} (see {self.prog} --help)\n")


# The exit codes of every diagnosing command (contract.md), for the help texts.
EXIT_CODES_HELP = (
    "exit status: 0 no warning or error, 1 warnings, 2 at least one error (mail over this "
    "route fails under the chosen policy), 3 the check could not be made (bad input, "
    "unreadable CA file, a resolver that does not answer)"
)
# What the lab decides itself (mxlens_lab.world.LAB_OWNED): `demo` does not offer them.
_LAB_OWNED_FLAGS = ("resolver", "port", "implicit_tls", "ca_file", "trust", "https_port")


def _add_probe_options(p: argparse.ArgumentParser, *, for_lab: bool = False) -> None:
    """The options every command that diagnoses takes (check, the UI, demo, explain --run).
    for_lab: only those the lab leaves to the user (`demo`; the lab sets the others)."""
    if not for_lab:
        _add_plumbing_options(p)
    _add_judging_options(p, for_lab=for_lab)


def _add_plumbing_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resolver", metavar="IP[:PORT]", help="send every DNS query to this server")
    p.add_argument(
        "--port", type=str, default="25", help="SMTP port to probe (default 25; 587 for submission)"
    )
    p.add_argument(
        "--implicit-tls", action="store_true", help="TLS from the first byte (port 465 style)"
    )
    add_trust_store_options(p)
    p.add_argument(
        "--https-port",
        default="443",
        metavar="N",
        help="port of the MTA-STS policy server (default 443; the lab's command lines set it)",
    )


def add_trust_store_options(p: argparse.ArgumentParser) -> None:
    """--ca-file and --trust, the same for check and for listen and cert (ownside_args)."""
    p.add_argument("--ca-file", metavar="PEM", help="trust exactly the roots in this PEM file")
    p.add_argument(
        "--trust",
        choices=("certifi", "system"),
        default="certifi",
        help="trust store when no --ca-file (default certifi)",
    )


def _add_judging_options(p: argparse.ArgumentParser, *, for_lab: bool) -> None:
    p.add_argument(
        "--mx",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="probe this host instead of the MX records (repeatable)",
    )
    p.add_argument(
        "--expect-name",
        metavar="NAME",
        help="certificate name a connector requires (TlsDomain); wildcards allowed",
    )
    p.add_argument(
        "--policy", default="strict", help=f"sender policy: {', '.join(POLICIES)} (default strict)"
    )
    p.add_argument(
        "--ehlo",
        metavar="NAME",
        help="EHLO name to announce (default: this host's name when it is fully qualified, "
        "else mxlens.invalid)",
    )
    p.add_argument(
        "--timeout", default="10", help="per-step network timeout in seconds (default 10)"
    )
    p.add_argument(
        "--no-endpoints", action="store_true", help="skip the CA endpoint (OCSP/CRL/AIA) checks"
    )
    p.add_argument(
        "--deadline",
        metavar="S",
        help="overall deadline of the whole diagnosis in seconds (default 15 x --timeout, at "
        "least 60); what has not finished by then is reported as not tested",
    )
    p.add_argument(
        "--allow-private-endpoints",
        action="store_true",
        help="also fetch CA endpoint and MTA-STS URLs on private, loopback or link-local "
        "addresses and on ports other than 80/443 (internal PKIs; off by default because "
        "certificates choose these URLs)",
    )
    p.add_argument(
        "--no-extra-probes",
        action="store_true",
        help="skip the TLS version sweep, the TLS 1.2 cipher probe and the STARTTLS injection test",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="the main session only: one connection per address, no side probes (the report "
        "names what it skipped); for monitoring that polls often",
    )
    p.add_argument(
        "--attempts",
        default="1",
        metavar="N",
        help="main SMTP sessions per address, one after another (default 1); differing attempts (a load balancer with differing nodes) give pool.inconsistent",
    )
    if not for_lab:
        p.add_argument(
            "--lab",
            action="store_true",
            help="start the built-in lab and check one of its domains (no network needed)",
        )


def _add_walk_option(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--walk", action="store_true", help=help_text)


def _add_report_options(p: argparse.ArgumentParser) -> None:
    """What `check` alone does with a finished diagnosis: JSON, connector verdict, ticket."""
    p.add_argument(
        "--json", action="store_true", help="print one JSON document (mxlens/1) on stdout"
    )
    p.add_argument(
        "--connector",
        metavar="NAME",
        help="judge as this sender/connector profile (sets --policy; prints its verdict first): "
        + ", ".join(_connector_names()),
    )
    p.add_argument(
        "--ticket",
        choices=("md", "text"),
        help="also save a ticket report (Markdown or plain text); its path goes to stderr",
    )
    p.add_argument(
        "--ticket-to",
        metavar="FILE",
        help="save the ticket report to FILE (default: $MXLENS_EXPORT_DIR, else $XDG_STATE_HOME/mxlens)",
    )


def _connector_names() -> list[str]:
    from probes.interpret.connectors import PROFILES

    return list(PROFILES)


def _parser_for(command: str) -> _Parser:
    if command == "check":
        p = _Parser(
            prog="mxlens check",
            description="Diagnose mail delivery over TLS to DOMAIN and print a report.",
            epilog=EXIT_CODES_HELP,
        )
        p.add_argument("domain", metavar="DOMAIN")
        _add_probe_options(p)
        _add_walk_option(
            p,
            "add the step-by-step walk-through (JSON keys walk, first_failure; text: before the report)",
        )
        _add_report_options(p)
        from tui.commands.monitoring import add_check_options

        add_check_options(p)
        from tui.commands.recording import add_history_option

        add_history_option(p)
    elif command in _COMMAND_MODULES:
        import importlib

        p = importlib.import_module(_COMMAND_MODULES[command]).parser(_Parser, _add_probe_options)
    elif command == "lab":
        p = _Parser(
            prog="mxlens lab",
            description="Run the built-in mail lab in the foreground (Ctrl+C stops it).",
            epilog=f"scenarios: {', '.join(_scenario_names())}",
        )
        p.add_argument(
            "--scenario",
            action="append",
            default=[],
            metavar="NAME",
            help="only this scenario (repeatable)",
        )
        from mxlens_lab.__main__ import add_list_option

        add_list_option(p)
    elif command == "demo":
        p = _Parser(
            prog="mxlens demo",
            description="Start the built-in lab and open the UI on it (the lab sets the "
            "resolver, ports and trust store; / lists its domains).",
        )
        p.add_argument(
            "domain", nargs="?", metavar="DOMAIN", help="a lab domain (default healthy.lab.test)"
        )
        _add_probe_options(p, for_lab=True)
        _add_walk_option(p, "open the walk-through when the diagnosis ends")
        from tui.commands.recording import add_history_option

        add_history_option(p)
    elif command == "explain":
        p = _Parser(
            prog="mxlens explain",
            description="Decode a bounce (NDR) or MTA log text: codes, remote host, recipient domain, "
            "the walk step where delivery stops and the findings that can cause it. Exit 0 recognised, "
            "1 not recognised, 3 bad input; with --run, the check's exit code.",
        )
        p.add_argument("text", metavar="TEXT|-", help="the text, or - to read it from stdin")
        p.add_argument(
            "--run",
            action="store_true",
            help="then check the host or domain the text names and confirm the cause",
        )
        p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        _add_probe_options(p)
        from tui.commands.recording import add_history_option

        add_history_option(p)
    else:
        p = _Parser(
            prog="mxlens",
            usage="mxlens [DOMAIN] [options]  (the terminal UI)\n"
            "       mxlens {check,explain,history,diff,watch,lab,demo} ...  "
            "(mxlens COMMAND --help)\n"
            "       mxlens --version",
            description="Find out why mail to a domain fails over TLS. Commands: check "
            "(headless report), explain (decode a bounce), history, diff, watch (recorded "
            "checks), listen, cert (our own sending side), lab (run the built-in lab), demo (the UI on the lab); without a "
            "command, open the terminal UI.",
            epilog=EXIT_CODES_HELP,
        )
        p.add_argument("--version", action="version", version=f"mxlens {_version()}")
        p.add_argument("domain", nargs="?", metavar="DOMAIN")
        _add_probe_options(p)
        _add_walk_option(p, "open the walk-through when the diagnosis ends")
        from tui.commands.recording import add_history_option

        add_history_option(p)
    return p


def _version() -> str:
    from probes.model.version import mxlens_version

    return mxlens_version()


def _scenario_names() -> list[str]:
    from mxlens_lab.scenarios import SCENARIOS

    return list(SCENARIOS)


def _positive_float(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CheckError(f"{flag} must be a number of seconds, not {text!r}") from None
    if not 0 < value <= 600:
        raise CheckError(f"{flag} must be more than 0 and at most 600 seconds, not {text}")
    return value


def _port(text: str, flag: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise CheckError(f"{flag} must be a port number from 1 to 65535, not {text!r}")
    return int(text)


def _mx_override(text: str) -> MxOverride:
    """`--mx HOST[:PORT]`, `--mx ADDR[:PORT]`, `--mx [IPv6][:PORT]`, normalised."""
    import ipaddress

    from probes.model.names import split_host_port
    from probes.net.dns import to_ascii

    try:
        host, port = split_host_port(text)
    except ValueError as exc:
        raise CheckError(f"bad --mx {text!r}: {exc}") from None
    if not host:
        raise CheckError(f"bad --mx {text!r}: give a host name or an address")
    try:
        return MxOverride(str(ipaddress.ip_address(host)), port)
    except ValueError:
        pass
    try:
        return MxOverride(to_ascii(host), port)
    except CheckError as exc:
        raise CheckError(f"bad --mx {text!r}: {exc}") from None


def _ehlo_name(text: str | None) -> str | None:
    """--ehlo: a host name or an address literal like [192.0.2.1]; never anything that could
    smuggle a second command into the dialogue."""
    if text is None:
        return None
    if not text or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise CheckError(
            f"bad --ehlo {text!r}: give a host name, without spaces or control characters"
        )
    if text.startswith("[") and text.endswith("]"):
        return text
    from probes.net.dns import to_ascii

    try:
        return to_ascii(text)
    except CheckError as exc:
        raise CheckError(f"bad --ehlo {text!r}: {exc}") from None


# argparse destinations -> the Options field each one sets
_DEST_FIELDS = {
    "resolver": "resolver",
    "port": "port",
    "implicit_tls": "implicit_tls",
    "mx": "mx",
    "ca_file": "ca_file",
    "trust": "trust",
    "expect_name": "expect_name",
    "policy": "policy",
    "connector": "policy",
    "ehlo": "ehlo",
    "timeout": "timeout",
    "no_endpoints": "endpoints",
    "no_extra_probes": "extra_probes",
    "quick": "quick",
    "attempts": "attempts",
    "https_port": "https_port",
    "deadline": "deadline",
    "allow_private_endpoints": "private_endpoints",
}


def _given_fields(parser: argparse.ArgumentParser, args: list[str]) -> frozenset[str]:
    """The Options fields the user set on the command line (defaults suppressed)."""
    probe = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:  # argparse offers no public way to list them
        if action.option_strings and action.dest in _DEST_FIELDS:
            kwargs: dict[str, Any] = {"dest": action.dest, "default": argparse.SUPPRESS}
            if action.nargs == 0:
                kwargs["action"] = "store_true" if action.const is True else "store_const"
                if kwargs["action"] == "store_const":
                    kwargs["const"] = action.const
            else:
                kwargs["action"] = (
                    "append" if isinstance(action, argparse._AppendAction) else "store"
                )
            probe.add_argument(*action.option_strings, **kwargs)
    known, _ = probe.parse_known_args(args)
    return frozenset(_DEST_FIELDS[dest] for dest in vars(known))


def _options_from_args(ns: argparse.Namespace) -> Options:
    """Turn parsed flags into Options, with a one-line CheckError for any bad value."""
    from probes.net.dns import parse_resolver

    if getattr(ns, "connector", None):
        from probes.interpret.connectors import get_profile

        profile = get_profile(ns.connector)
        if profile.needs_name and not ns.expect_name and not getattr(ns, "lab", False):
            raise CheckError(
                f"--connector {profile.name} needs --expect-name NAME (its {profile.name_label})"
            )
        ns.policy = profile.policy
        if profile.policy == "domain" and not ns.expect_name:
            ns.policy = (
                "verify"  # the lab scenario supplies the name; the connector re-grades with it
            )
    if ns.policy not in POLICIES:
        raise CheckError(f"--policy must be one of {', '.join(POLICIES)}, not {ns.policy!r}")
    if ns.policy == "domain" and not ns.expect_name:
        raise CheckError("--policy domain needs --expect-name NAME (the connector's TlsDomain)")
    for dest, default in (
        ("resolver", None),
        ("port", "25"),
        ("implicit_tls", False),
        ("ca_file", None),
        ("trust", "certifi"),
        ("https_port", "443"),
    ):
        if not hasattr(ns, dest):  # `demo`: the lab sets these
            setattr(ns, dest, default)
    if ns.ca_file is not None and not os.path.isfile(ns.ca_file):
        raise CheckError(f"cannot read --ca-file {ns.ca_file}: no such file")
    return Options(
        policy=ns.policy,
        resolver=parse_resolver(ns.resolver) if ns.resolver else None,
        port=_port(ns.port, "--port"),
        implicit_tls=ns.implicit_tls,
        mx=tuple(_mx_override(m) for m in ns.mx),
        ca_file=ns.ca_file,
        trust=ns.trust,
        expect_name=ns.expect_name,
        ehlo=_ehlo_name(ns.ehlo),
        timeout=_positive_float(ns.timeout, "--timeout"),
        endpoints=not ns.no_endpoints,
        extra_probes=not ns.no_extra_probes,
        attempts=_quick_attempts(ns),
        https_port=_port(ns.https_port, "--https-port"),
        quick=bool(getattr(ns, "quick", False)),
        private_endpoints=ns.allow_private_endpoints,
        deadline=_positive_float(ns.deadline, "--deadline") if ns.deadline else None,
    )


def _quick_attempts(ns: argparse.Namespace) -> int:
    attempts = _attempts(ns.attempts)
    if getattr(ns, "quick", False) and attempts > 1:
        raise CheckError("--quick makes one connection per address; it cannot take --attempts")
    return attempts


def _attempts(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise CheckError(f"--attempts must be a whole number from 1 to 20, not {text!r}") from None
    if not 1 <= value <= 20:
        raise CheckError(f"--attempts must be a whole number from 1 to 20, not {text!r}")
    return value


async def _check(
    domain: str,
    options: Options,
    *,
    as_json: bool,
    use_lab: bool,
    extras: argparse.Namespace | None = None,
) -> int:
    from probes.diagnose import diagnose
    from probes.report import Report

    if use_lab:
        from mxlens_lab.scenarios import find_scenario
        from mxlens_lab.world import Lab
        from probes.net.dns import to_ascii

        to_ascii(domain)  # a mail address or a URL gets its own hint, not "not a lab domain"
        scenario = find_scenario(domain)
        if scenario is None:
            raise CheckError(f"{domain} is not a lab domain (`mxlens lab` lists them)")
        async with Lab(scenarios=[scenario.name]) as lab:
            return await _check(
                domain,
                lab.options_for(domain, options),
                as_json=as_json,
                use_lab=False,
                extras=extras,
            )
    from datetime import datetime, timezone

    started = datetime.now(timezone.utc)
    report = Report(domain, options)
    async for event in diagnose(domain, options):
        report.add(event)
    changes = None
    # Built once: the history keeps the same document that --json prints.
    doc = report.to_json()
    if extras is None or not extras.no_history:
        from tui.commands.recording import record_check_document

        # Recorded before the extras: the ticket says what changed since the last check.
        changes = record_check_document(doc, report.options, started, source="check").diff
    if extras is not None and (extras.nagios or extras.prometheus):
        from tui.commands.monitoring import after_check

        done = after_check(report, extras)
        if done is not None:
            return done
    if extras is not None and (
        extras.walk or extras.connector or extras.ticket or extras.ticket_to
    ):
        return _check_extras(report, extras, as_json=as_json, changes=changes)
    if as_json:
        _write_json(doc)
    else:
        sys.stdout.write(report.to_text(_text_width()))
    return report.exit_code()


def _check_extras(
    report: Any, ns: argparse.Namespace, *, as_json: bool, changes: RunDiff | None = None
) -> int:
    """--walk, --connector and --ticket: the walk-through, a connector's verdict, a ticket file."""
    from probes.interpret.connectors import judge
    from probes.interpret.ticket import render, save_ticket, ticket_path
    from probes.interpret.walk import build_walk, walk_text

    result = judge(report, ns.connector, report.options.expect_name) if ns.connector else None
    if result is not None:
        report.findings = list(
            result.findings
        )  # severities and exit code as the connector sees them
    walk = result.walk if result is not None else build_walk(report)
    if as_json:
        doc = report.to_json()
        if ns.walk:
            doc.update(walk.to_json())
        if result is not None:
            doc["connector"] = result.to_json()
        _write_json(doc)
    else:
        from probes.model.safetext import visible

        if result is not None:
            sys.stdout.write(
                f"{visible(result.verdict)}  [connector {result.profile.name}, policy {result.profile.policy}]\n\n"
            )
        if ns.walk:
            sys.stdout.write(walk_text(walk) + "\n")
        sys.stdout.write(report.to_text(_text_width()))
    if ns.ticket or ns.ticket_to:
        fmt: Literal["md", "text"] = (
            "md"
            if (ns.ticket or "") == "md"
            or (not ns.ticket and ns.ticket_to.lower().endswith((".md", ".markdown")))
            else "text"
        )
        path = Path(ns.ticket_to) if ns.ticket_to else ticket_path(report.target, fmt)
        try:
            save_ticket(render(report, fmt, walk, result, changes), path)
        except OSError as exc:
            raise CheckError(f"cannot write the ticket report {path}: {exc.strerror}") from None
        sys.stderr.write(f"mxlens: ticket report saved to {path}\n")
    return int(report.exit_code())


def _write_json(doc: Any) -> None:
    from probes.report import json_text

    sys.stdout.write(json_text(doc))


def _read_text(arg: str) -> str:
    from probes.interpret.explain import MAX_TEXT

    if arg != "-":
        return arg
    # Enough bytes for MAX_TEXT characters of any UTF-8 and one more, so that explain() can
    # say the text was cut; the rest of stdin is never read.
    limit = 4 * MAX_TEXT + 4
    try:
        data = sys.stdin.buffer.read(limit)
    except (OSError, ValueError, AttributeError) as exc:
        raise CheckError(f"cannot read the text from stdin: {exc}") from None
    return data.decode("utf-8", errors="replace")


async def _explain(ns: argparse.Namespace, options: Options) -> int:
    """`mxlens explain`: decode, print, and with --run check what the text names (lab too)."""
    from probes.interpret.explain import check_options, explain, run_check, to_text

    expl = explain(_read_text(ns.text))
    if not ns.run:
        if ns.json:
            _write_json(expl.to_json())
        else:
            sys.stdout.write(to_text(expl))
        return 0 if expl.recognised else 1
    if expl.target() is None:
        if ns.json:
            _write_json({**expl.to_json(), "check": None, "cause": None})
        else:
            sys.stdout.write(to_text(expl))
        check_options(expl, options)  # raises the one-line CheckError (exit 3)
    from datetime import datetime, timezone

    started = datetime.now(timezone.utc)
    if ns.lab:
        from mxlens_lab.scenarios import find_scenario
        from mxlens_lab.world import Lab

        target = expl.target()
        assert target is not None
        found = [s for s in (find_scenario(t) for t in target if t) if s is not None]
        if not found:
            raise CheckError(f"{target[0]} is not a lab domain (`mxlens lab` lists them)")
        async with Lab(scenarios=[found[0].name]) as lab:
            options = lab.options_for(found[0].domain, options)
            doc, code = await run_check(expl, options)
    else:
        doc, code = await run_check(expl, options)
    if not ns.no_history:
        from tui.commands.recording import record_check_document

        record_check_document(doc["check"], options, started, source="explain")
    if ns.json:
        _write_json(doc)
    else:
        from probes.model.safetext import visible

        sys.stdout.write(to_text(expl))
        sys.stdout.write(
            f"Confirmed cause: {visible(doc['cause'] or 'none of the candidates was found')}\n\n"
        )
        findings = [f for f in doc["check"]["findings"] if f["severity"] in ("error", "warning")]
        for f in findings:
            sys.stdout.write(
                f"  {f['severity'].upper():7} {f['id']:28} {visible(f['where'])}: {visible(f['summary'])}\n"
            )
    return code


def _run_lab(scenarios: list[str], *, listing: bool) -> int:
    from mxlens_lab.__main__ import run_foreground

    return run_foreground(scenarios or None, listing=listing)


def _fail(message: str) -> int:
    """One line on stderr, with anything a server or a user typed made visible-safe."""
    from probes.model.safetext import visible

    sys.stderr.write(f"mxlens: {visible(message)}\n")
    return EXIT_BAD_INPUT


def _unknown_command(args: list[str]) -> str | None:
    """The one-line complaint for `mxlens chek x`: a first word that is no domain (no dot)
    followed by more words is a mistyped command, not a domain with a stray argument."""
    positional = [a for a in args if not a.startswith("-")]
    if len(positional) < 2 or args[0] != positional[0] or "." in positional[0]:
        return None
    import difflib

    close = difflib.get_close_matches(positional[0], COMMANDS, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"unknown command {positional[0]!r} (commands: {', '.join(COMMANDS)}){hint}"


def _text_width() -> int:
    """Where the text report wraps: the terminal's width, 80 into a file or a pipe."""
    try:
        if sys.stdout.isatty():
            return max(40, os.get_terminal_size(sys.stdout.fileno()).columns)
    except (AttributeError, ValueError, OSError):
        pass
    return 80


def _has_terminal() -> bool:
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def main(argv: Sequence[str] | None = None) -> int:
    if not os.environ.get("MXLENS_DEBUG"):
        # A Python warning on stderr (cryptography on an over-long name, a deprecation) is
        # noise to the user and scribbles over the UI; MXLENS_DEBUG=1 shows them.
        import warnings

        warnings.simplefilter("ignore")
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args and args[0] in COMMANDS else ""
    rest = args[1:] if command else args
    parser = _parser_for(command)
    ns: argparse.Namespace | None = None
    try:
        if not command and (complaint := _unknown_command(rest)):
            raise CheckError(complaint)
        ns = parser.parse_args(rest)
        given = _given_fields(parser, rest)

        def options_from_args(ns: argparse.Namespace) -> Options:
            return replace(_options_from_args(ns), given=given)

        if command == "check":
            from tui.commands.monitoring import validate

            validate(ns)
            options = options_from_args(ns)
            return asyncio.run(
                _check(ns.domain, options, as_json=ns.json, use_lab=ns.lab, extras=ns)
            )
        if command in _COMMAND_MODULES:
            import importlib

            handler = importlib.import_module(_COMMAND_MODULES[command])
            return int(handler.run(ns, options_from_args))
        if command == "lab":
            return _run_lab(ns.scenario, listing=ns.list)
        if command == "explain":
            return asyncio.run(_explain(ns, options_from_args(ns)))
        options = options_from_args(ns)
        if not _has_terminal():
            # Textual would draw escape codes into the file and wait for keys that never come.
            raise CheckError(
                "the UI needs a terminal on stdin and stdout; for scripts use "
                "`mxlens check DOMAIN` (add --json for one JSON document)"
            )
        from tui.app import run_app

        if command == "demo" or getattr(ns, "lab", False):
            from mxlens_lab.world import refuse_lab_owned

            refuse_lab_owned(options)
            return (
                run_app(ns.domain, options, lab=True, walk=ns.walk, history=not ns.no_history) or 0
            )
        return run_app(ns.domain, options, lab=False, walk=ns.walk, history=not ns.no_history) or 0
    except CheckError as exc:
        code = _fail(str(exc))
        if command == "check":
            from tui.commands.monitoring import after_failure

            return after_failure(exc, ns) or code
        return code
    except KeyboardInterrupt:
        return _fail("interrupted")
    except BrokenPipeError:  # `mxlens check ... | head`: the reader left, nothing to say
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the exit flush quiet
        return 0
    except SystemExit:
        raise
    except Exception as exc:  # one line, never a traceback, unless asked for
        if os.environ.get("MXLENS_DEBUG"):
            raise
        return _fail(
            f"internal error: {type(exc).__name__}: {exc} (set MXLENS_DEBUG=1 for details)"
        )


def entry() -> None:
    code = main()
    if sys.argv[1:2] == ["check"]:
        # A headless check is done and has written its report: skip the interpreter's
        # teardown of every module and object (a tenth of a second of CPU, measured with
        # benchmarks/real_postfix.py), which nothing after this point needs.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
