"""probes/checks/tag_record.py: the record grammar MTA-STS and TLS-RPT share."""

from __future__ import annotations

import pytest

from probes.checks.tag_record import TagRecord, TagRecordError, read_tag_record, split_tag_record


def test_one_record_among_other_txt_with_known_fields_and_extensions() -> None:
    got = read_tag_record(
        ["google-site-verification=x", "v=STSv1; id=20261201; ext_a=1;"], "v=STSv1", known=("id",)
    )
    assert got == TagRecord("v=STSv1; id=20261201; ext_a=1;", {"id": "20261201"}, (("ext_a", "1"),))


def test_absent_is_none() -> None:
    assert read_tag_record(["v=spf1 -all"], "v=TLSRPTv1", known=("rua",)) is None


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        ([" v=STSv1; id=1"], "does not begin exactly"),
        (["v=STSv1; id=1", "v=STSv1; id=2"], "2 records begin with v=STSv1"),
        (["v=STSv1; id=1; id=2"], "more than one id= field"),
        (["v=STSv1; id=1; v=STSv1"], "more than one v= field"),
        (["v=STSv1; id"], "has no '='"),
        (["v=STSv1; id=1;; x=y"], "empty field"),
        (["v=STSv1 id=1"], "must be followed by ';'"),
        (["v=STSv1; id=1; bad name=1"], "is not valid"),
    ],
)
def test_errors_name_the_reason(records: list[str], reason: str) -> None:
    got = read_tag_record(records, "v=STSv1", known=("id",))
    assert isinstance(got, TagRecordError) and reason in got.reason


def test_split_allows_one_trailing_semicolon_and_white_space() -> None:
    assert split_tag_record("v=TLSRPTv1; rua=mailto:a@b.example; \t", "v=TLSRPTv1") == [
        "rua=mailto:a@b.example"
    ]
