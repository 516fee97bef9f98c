"""The audit filter (faceid.filters.AuditFilterForm) parses its values, without a database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from faceid.filters import AuditFilterForm


def parse(**params: str) -> dict:
    form = AuditFilterForm(params)
    assert form.is_valid(), form.errors
    return form.cleaned_data


def test_decisions_are_one_or_several_comma_separated():
    assert parse(decision="reject")["decision"] == ["reject"]
    assert parse(decision=" accept , no_match ,")["decision"] == ["accept", "no_match"]
    assert parse()["decision"] == []
    form = AuditFilterForm({"decision": "accept,maybe,never"})
    assert not form.is_valid() and form.errors["decision"] == ["unknown: maybe, never"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("1", True), ("yes", True), ("on", True), ("false", False), ("0", False),
     ("off", False), ("", None)],
)  # fmt: skip
def test_masked_is_true_false_or_either(value, expected):
    assert parse(masked=value)["masked"] is expected


def test_times_are_iso_8601_dates_or_date_times():
    assert parse(since="2024-05-01")["since"] == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse(until="2024-05-01T10:30:00+02:00")["until"] == datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
    form = AuditFilterForm({"since": "yesterday"})
    assert not form.is_valid() and form.errors["since"] == ["use an ISO 8601 date or date-time"]
