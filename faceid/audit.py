"""The audit log's chain: canonical serialisation, keyed hashing, appending, verification; and its
columns and CSV export (one list of columns, one streaming export for the API, the console and the
Django admin).

Each VerificationAttempt (verify/identify rows and event rows alike, one sequence per organization)
carries ``row_hash``, computed over a canonical form that includes ``prev_hash``, the row_hash of the
previous row of the same organization (by ``seq``). Altering, inserting or deleting a row in the
middle of the chain breaks a link that ``verify_chain`` reports.

Versions (the row's ``hash_version``, itself hashed from version 2 on):
  1: SHA-256 of the version-1 canonical form (HASHED_FIELDS_V1). Rows written before the keyed chain;
     anyone with write access to the table could recompute them.
  2: HMAC-SHA256, under a key derived from settings.AUDIT_HMAC_KEY, of the version-2 canonical form
     (HASHED_FIELDS: version 1's fields plus action, details, hash_version). The key lives in the
     application's environment, never in the database, so a database role alone cannot forge a row.
  A chain's versions never decrease: a version-1 row after a version-2 row is reported as a break
  (otherwise a forger would write SHA-256 rows).
Removing rows at the *end* of a chain leaves a shorter valid chain; faceid.audit_heads publishes the
heads outside the database and checks the table against them.

Canonical form, stable across Python/PostgreSQL versions:
  JSON, keys sorted, no whitespace, ASCII only, of {"v": <version>, "fields": {...}} with every field
  of the version's list; None -> null, bool -> true/false, int -> number, str -> string, float -> the
  string repr() gives (shortest round-trip form), datetime -> "YYYY-MM-DDTHH:MM:SS.ffffffZ" in UTC,
  IP address -> "<version>:<packed bytes in hex>" (textual IPv6 forms differ between libraries).
  ``details`` is stored as canonical JSON text (faceid.events) and hashed as that string.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from faceid.models import VerificationAttempt
from tenants.models import Organization

GENESIS_HASH = "0" * 64
# The database trigger refusing UPDATE/DELETE/TRUNCATE (migration 0003).
AUDIT_TABLE = VerificationAttempt._meta.db_table
AUDIT_TRIGGER = "faceid_attempt_append_only"
# The version new rows are written with; older versions still verify (see above).
HASH_VERSION = 2
KNOWN_HASH_VERSIONS = frozenset({1, 2})
# Rows fetched per database round trip when walking the whole log (chain check, CSV export).
CHUNK_ROWS = 2000

# Version 1: every column of the original table except the surrogate id and row_hash itself.
HASHED_FIELDS_V1: tuple[str, ...] = (
    "organization_id",
    "seq",
    "api_key_id",
    "user_id",
    "mode",
    "claimed_person_id",
    "claimed_external_id",
    "decision",
    "reason",
    "similarity",
    "threshold",
    "matched_person_id",
    "masked",
    "mask_probability",
    "model_name",
    "model_version",
    "latency_ms",
    "client_ip",
    "created_at",
    "prev_hash",
)
# Version 2 (current): every column except id and row_hash. A test checks this covers the model.
HASHED_FIELDS: tuple[str, ...] = (*HASHED_FIELDS_V1, "action", "details", "hash_version")
_FIELDS_BY_VERSION = {1: HASHED_FIELDS_V1, 2: HASHED_FIELDS}


def _master_key() -> bytes:
    key = getattr(settings, "AUDIT_HMAC_KEY", "") or ""
    if not key:
        raise ImproperlyConfigured("AUDIT_HMAC_KEY is not set: the audit chain cannot be keyed")
    return key.encode("utf-8")


def derived_key(purpose: str) -> bytes:
    """A key for one purpose (rows, published heads) derived from AUDIT_HMAC_KEY, so a value signed
    for one purpose is never valid for the other."""
    return hmac.new(_master_key(), f"faceid-audit:{purpose}".encode("ascii"), hashlib.sha256).digest()


def clean_text(value: Any, limit: int) -> str:
    """Text as the audit columns take it: PostgreSQL text cannot hold NUL; clients control some of it."""
    return ("" if value is None else str(value)).replace("\x00", "")[:limit]


def clean_client_ip(value: str | None) -> str | None:
    """A valid IP address, or None: a malformed forwarded header must not lose the audit row."""
    if not value:
        return None
    try:
        ip = ipaddress.ip_address(str(value).split("%", 1)[0].strip())
    except ValueError:
        return None
    return str(ip)


# pg_advisory_xact_lock key: a fixed namespace in the high 32 bits, the organization id below, so
# appends of one organization serialise while organizations do not wait on each other.
_LOCK_NAMESPACE = 0x46494431  # "FID1"


def _lock_key(organization_id: int) -> int:
    return (_LOCK_NAMESPACE << 32) | (organization_id & 0xFFFFFFFF)


def _canonical_value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "client_ip":
        ip = ipaddress.ip_address(value)
        return f"{ip.version}:{ip.packed.hex()}"
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        # float() first: numpy scalars subclass float but repr() differently across numpy versions.
        return repr(float(value))
    if isinstance(value, datetime):
        if timezone.is_naive(value):
            raise ValueError(f"{name}: naive datetime cannot be hashed")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    raise TypeError(f"{name}: cannot canonicalise {type(value).__name__}")


def canonical_bytes(attempt: VerificationAttempt, version: int | None = None) -> bytes:
    version = attempt.hash_version if version is None else version
    if version not in _FIELDS_BY_VERSION:
        raise ValueError(f"unknown audit hash version {version!r}")
    fields = {name: _canonical_value(name, getattr(attempt, name)) for name in _FIELDS_BY_VERSION[version]}
    document = {"v": version, "fields": fields}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def compute_row_hash(attempt: VerificationAttempt) -> str:
    """The row's hash under its own hash_version (SHA-256 for 1, HMAC-SHA256 for 2)."""
    data = canonical_bytes(attempt)
    if attempt.hash_version == 1:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(derived_key("rows"), data, hashlib.sha256).hexdigest()


def append_attempt(attempt: VerificationAttempt) -> VerificationAttempt:
    """Chain and insert an unsaved attempt. Use faceid.services.record_attempt, which validates first.

    Holds a per-organization advisory lock for the insert's transaction so concurrent writers see
    each other's rows and the chain stays linear. Call it outside long transactions: the lock (and
    the row's visibility to other writers) lasts until the outermost transaction commits.
    """
    if attempt.pk is not None:
        raise ValueError("attempt already saved")
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_key(attempt.organization_id)])
        last = (
            VerificationAttempt.objects.filter(organization_id=attempt.organization_id)
            .order_by("-seq")
            .values("seq", "row_hash")
            .first()
        )
        attempt.seq = last["seq"] + 1 if last else 1
        attempt.prev_hash = last["row_hash"] if last else GENESIS_HASH
        # Taken under the lock so created_at follows seq within an organization.
        attempt.created_at = timezone.now()
        attempt.hash_version = HASH_VERSION
        attempt.row_hash = compute_row_hash(attempt)
        attempt.save(_append=True)
    return attempt


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int  # rows verified before the first break (all rows when ok)
    first_broken_id: int | None = None
    first_broken_seq: int | None = None
    reason: str = ""
    head_seq: int | None = None  # last row of a valid chain: record it to detect tail truncation
    head_hash: str | None = None

    def __str__(self) -> str:
        if self.ok:
            if not self.checked:
                return "OK: the audit chain is empty"
            return f"OK: {self.checked} rows verified; head seq {self.head_seq} hash {self.head_hash}"
        return (
            f"BROKEN at attempt id {self.first_broken_id} (seq {self.first_broken_seq}): {self.reason}; "
            f"rows verified before it: {self.checked}"
        )


def verify_chain(organization: Organization, *, chunk_size: int = CHUNK_ROWS) -> ChainReport:
    """Walk the organization's chain in seq order and report the first broken link."""
    expected_seq = 1
    prev_hash = GENESIS_HASH
    version = 1
    checked = 0
    rows = VerificationAttempt.objects.filter(organization=organization).order_by("seq")
    for row in rows.iterator(chunk_size=chunk_size):
        reason = ""
        if row.seq != expected_seq:
            reason = f"sequence gap: expected seq {expected_seq}, found {row.seq} (rows removed before it)"
        elif row.prev_hash != prev_hash:
            reason = (
                "prev_hash does not match the previous row's hash (a row before it was altered or removed)"
            )
        elif row.hash_version not in KNOWN_HASH_VERSIONS:
            reason = f"unknown hash version {row.hash_version} (the row was altered)"
        elif row.hash_version < version:
            reason = (
                f"hash version {row.hash_version} after version {version}: a keyed row cannot be followed "
                "by an unkeyed one (the row was forged or altered)"
            )
        elif not hmac.compare_digest(compute_row_hash(row), row.row_hash):
            reason = "row contents do not match its row_hash (the row was altered)"
        if reason:
            return ChainReport(
                ok=False, checked=checked, first_broken_id=row.pk, first_broken_seq=row.seq, reason=reason
            )
        checked += 1
        expected_seq += 1
        prev_hash = row.row_hash
        version = row.hash_version
    return ChainReport(
        ok=True,
        checked=checked,
        head_seq=expected_seq - 1 if checked else None,
        head_hash=prev_hash if checked else None,
    )


# --- columns and CSV export (used by the Django admin, the console and the API) ---------------------

# The audit columns in export order: the CSV header, and the API's fields (which name a related row by
# its relation, claimed_person, where the CSV names the column, claimed_person_id; both carry its id).
CSV_COLUMNS: tuple[str, ...] = (
    "id",
    "created_at",
    "mode",
    "decision",
    "action",
    "details",
    "reason",
    "claimed_external_id",
    "claimed_person_id",
    "matched_person_id",
    "matched_external_id",
    "similarity",
    "threshold",
    "masked",
    "mask_probability",
    "model_name",
    "model_version",
    "latency_ms",
    "client_ip",
    "api_key",
    "user",
    "seq",
    "row_hash",
)

# Columns that show a related row by its public label rather than its id.
_LABELS: dict[str, Callable[[VerificationAttempt], str | None]] = {
    "matched_external_id": lambda a: a.matched_person.external_id if a.matched_person_id else None,
    "api_key": lambda a: a.api_key.prefix if a.api_key_id else None,
    "user": lambda a: a.user.get_username() if a.user_id else None,
}


def column_value(attempt: VerificationAttempt, column: str) -> Any:
    """One audit column of a row; related rows by their public label (None when there is none)."""
    label = _LABELS.get(column)
    return label(attempt) if label is not None else getattr(attempt, column)


# A formula trigger at the start of the text or after a character a spreadsheet may split cells on
# (its locale's separator may be ';' or a tab, not ','), past any spaces or quotes.
_FORMULA_AFTER_SEPARATOR = re.compile(r'(^|[,;\t\r\n])([ "]*)([=+\-@])')


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell that no spreadsheet evaluates: external ids, reasons and details come
    from clients. A ' goes before every formula trigger (= + - @) that starts the text or follows a
    separator-like character (, ; tab CR LF, then spaces or quotes), and before a leading tab or CR;
    the writer quotes every cell (csv.QUOTE_ALL). The JSON API returns the values unchanged."""
    if isinstance(value, datetime):
        return value.isoformat()
    if not isinstance(value, str):
        return value
    if value[:1] in ("\t", "\r"):
        value = "'" + value
    return _FORMULA_AFTER_SEPARATOR.sub(r"\1\2'\3", value)


def csv_writer(out: Any) -> Any:
    """The one CSV dialect of the exports: comma-separated, every cell quoted, embedded quotes doubled."""
    return csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")


def attempt_csv_rows(attempts: Iterable[VerificationAttempt]) -> Iterator[list[Any]]:
    """Header then one row per attempt. Pass a queryset with select_related("api_key", "user",
    "matched_person") to avoid a query per row."""
    yield list(CSV_COLUMNS)
    for attempt in attempts:
        yield [csv_cell(column_value(attempt, column)) for column in CSV_COLUMNS]


class _Echo:
    def write(self, value: str) -> str:
        return value


def attempts_csv_response(attempts: QuerySet[VerificationAttempt], filename: str) -> StreamingHttpResponse:
    """The attempts as a CSV download, streamed line by line (the log can be large)."""
    writer = csv_writer(_Echo())
    rows = attempts.select_related("api_key", "user", "matched_person").iterator(chunk_size=CHUNK_ROWS)
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in attempt_csv_rows(rows)), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
