# ruff: noqa: F811  (the foundation fixtures, imported, are redefined as test parameters)
"""The audit CSV export is safe in spreadsheets whatever separator they split on."""

import csv
import io

from faceid import audit
from faceid.models import VerificationAttempt

NASTY = [
    "=cmd|' /C calc'!A0",
    'x;=HYPERLINK("http://evil")',
    'a,"b";-2+3',
    'He said "hi"; @SUM(A1)',
    "ok\t=1+1",
    ' "=quoted',
    "\t=tab",
    "plain text",
]
_TRIGGERS = ("=", "+", "-", "@")


def _export(org) -> str:
    response = audit.attempts_csv_response(VerificationAttempt.objects.filter(organization=org), "x.csv")
    return b"".join(response.streaming_content).decode()


def test_every_cell_is_quoted_and_reads_back_with_a_real_csv_reader(org, record):
    for text in NASTY:
        record(org, claimed_external_id=text[:128], reason=text)
    body = _export(org)
    rows = list(csv.DictReader(io.StringIO(body)))
    reasons = {row["reason"] for row in rows}
    assert len(rows) == len(NASTY)
    assert "plain text" in reasons and 'He said "hi"; \'@SUM(A1)' in reasons
    # Every cell quoted: a ';' or ',' inside a value never ends a cell.
    for line in body.strip("\r\n").split("\r\n"):
        assert line.startswith('"') and line.endswith('"')


def test_no_cell_starts_a_formula_in_the_comma_or_the_semicolon_dialect(org, record):
    for text in NASTY:
        record(org, claimed_external_id=text[:128], reason=text)
    body = _export(org)
    for delimiter in (",", ";", "\t"):
        for row in csv.reader(io.StringIO(body), delimiter=delimiter):
            for cell in row:
                assert not cell.lstrip(' "').startswith(_TRIGGERS), (delimiter, cell)
    # A spreadsheet that ignores the quoting and splits on any separator finds no formula either.
    for fragment in body.replace(";", ",").replace("\t", ",").replace("\r\n", ",").split(","):
        assert not fragment.lstrip(' "').startswith(_TRIGGERS), fragment


def test_csv_cell_neutralises_formula_prefixes_after_separators():
    assert audit.csv_cell("=1+1") == "'=1+1"
    assert audit.csv_cell("a;=1") == "a;'=1"
    assert audit.csv_cell('a; "@x') == "a; \"'@x"
    assert audit.csv_cell("\r=1") == "'\r'=1"
    assert audit.csv_cell("a-b=c") == "a-b=c"  # not after a separator: unchanged
    assert audit.csv_cell(-0.5) == -0.5  # numbers are not text
