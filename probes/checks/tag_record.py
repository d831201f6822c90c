"""Tag-value TXT records: `v=STSv1; id=...` (RFC 8461 3.1) and `v=TLSRPTv1; rua=...` (RFC 8460 3).

Both standards share the grammar: a version tag first, fields split by `*WSP ";" *WSP`, and
extension fields `name=value`. This module picks the one record of a version among a name's TXT
strings, splits it and checks what the two grammars share; what each field means is left to
mtasts.py and tlsrpt.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from probes.model.safetext import decode
from probes.net.dns import Answer

_WSP = " \t"
_EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")
_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")  # no "=", ";", space or controls


@dataclass(frozen=True)
class TagRecord:
    """One syntactically valid record: its text, its known fields and its extensions."""

    text: str
    fields: dict[str, str]
    extensions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TagRecordError:
    """Why the TXT strings do not give one valid record; `text` is the record at fault."""

    reason: str
    text: str | None = None


def txt_strings(answer: Answer) -> list[str]:
    """The TXT records of an answer as text, each record's strings joined (RFC 7208 3.3 style,
    which RFC 8461 3.1 and RFC 8460 3 also use)."""
    out: list[str] = []
    if answer.rdata:
        for rd in answer.rdata:
            strings = getattr(rd, "strings", None)
            if strings is not None:
                out.append(decode(b"".join(strings)))
        return out
    # Fall back to the presentation form: "part one" "part two"
    for rec in answer.records:
        parts = re.findall(r'"((?:[^"\\]|\\.)*)"', rec)
        out.append("".join(_unescape(p) for p in parts) if parts else rec)
    return out


def _unescape(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        esc = m.group(1)
        return chr(int(esc)) if esc.isdigit() else esc

    return re.sub(r"\\(\d{3}|.)", repl, text)


def _looks_like(text: str, version: str) -> bool:
    """A record that was probably meant as `version` but does not start with it exactly
    (leading space, byte-order mark, wrong case, quotes): senders ignore such a record, and
    the domain's owner believes it is published."""
    cleaned = text.lstrip(" \t\ufeff\"'").lower()
    return cleaned.startswith(version.lower()) and not text.startswith(version)


def split_tag_record(text: str, version: str) -> list[str] | str:
    """Split `v=...; a=b; c=d` into its fields after the version, following the
    `*WSP ";" *WSP` delimiter rule shared by RFC 8461 3.1 and RFC 8460 3. A trailing `;` is
    allowed, and so is trailing white space (common and accepted by senders). Returns the
    list of fields, or a one-line reason."""
    if not text.startswith(version):
        return f"does not begin with {version}"
    rest = text[len(version) :].rstrip(_WSP)
    if not rest:
        return f"nothing after {version}"
    if rest.lstrip(_WSP)[:1] != ";":
        return f"{version} must be followed by ';'"
    pieces = rest.split(";")[1:]
    fields: list[str] = []
    for i, piece in enumerate(pieces):
        field_text = piece.strip(_WSP)
        if not field_text:
            if i == len(pieces) - 1 and i > 0:
                break  # one trailing ";"
            return "empty field (two ';' in a row, or nothing after the version)"
        fields.append(field_text)
    return fields


def extension_field_problem(name: str, value: str, *, shown: int | None = None) -> str | None:
    """Why `name=value` is not a valid extension field, or None when it is.

    RFC 8461 3.1 (sts-ext) and RFC 8460 3 (tlsrpt-ext) share the grammar: a name of 1 to 32
    letters, digits, "_", "." or "-" starting with a letter or digit, and a non-empty value
    without "=", ";", space or controls. `shown` cuts the name quoted in the reason to that
    many characters (the record text is echoed elsewhere; the reason stays one line)."""
    if not _EXT_NAME.fullmatch(name):
        return f"field name {name[:shown]!r} is not valid"
    if not _EXT_VALUE.fullmatch(value):
        return f"value of {name}= is empty or has forbidden characters"
    return None


def read_tag_record(
    txt_records: list[str], version: str, *, known: tuple[str, ...]
) -> TagRecord | TagRecordError | None:
    """The one record beginning with `version` among `txt_records`, split and checked.

    None: no record begins with it (the mechanism is not used). TagRecordError: more than one
    such record, a record that looks meant as `version` but that senders ignore (leading space,
    byte-order mark, quotes, wrong case), a syntax error, a repeated field or a bad extension.
    Fields named in `known` are returned by name; every other one must be a valid extension."""
    candidates = [t for t in txt_records if re.match(re.escape(version) + r"(?:[ \t;]|$)", t)]
    if not candidates:
        near = [t for t in txt_records if _looks_like(t, version)]
        if near:
            return TagRecordError(
                f"record does not begin exactly with '{version}' (leading space, byte-order "
                "mark, quotes or wrong case), so senders ignore it",
                near[0],
            )
        return None
    if len(candidates) > 1:
        return TagRecordError(
            f"{len(candidates)} records begin with {version}; exactly one is allowed",
            candidates[0],
        )
    text = candidates[0]
    pieces = split_tag_record(text, version)
    if isinstance(pieces, str):
        return TagRecordError(pieces, text)
    fields: dict[str, str] = {}
    extensions: list[tuple[str, str]] = []
    for field_text in pieces:
        name, sep, value = field_text.partition("=")
        if not sep:
            return TagRecordError(f"field {field_text[:60]!r} has no '='", text)
        if name in known:
            if name in fields:
                return TagRecordError(f"more than one {name}= field", text)
            fields[name] = value
        elif name == "v":
            return TagRecordError("more than one v= field", text)
        else:
            problem = extension_field_problem(name, value, shown=40)
            if problem is not None:
                return TagRecordError(problem, text)
            extensions.append((name, value))
    return TagRecord(text=text, fields=fields, extensions=tuple(extensions))
