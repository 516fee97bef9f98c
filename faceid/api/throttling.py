"""Per-caller rate limits: fixed windows counted atomically in the Django cache (Redis).

Buckets, set in settings.FACEID_THROTTLE_RATES as "<n>/<second|minute|hour|day>": ``api`` for
every call, ``pipeline`` additionally for the calls that run the face pipeline (enroll, verify,
identify), per caller (the API key's public prefix, or the console user); ``org_pipeline`` for the
pipeline calls of a whole organization. Besides rates, the in-flight bound (API_ORG_MAX_IN_FLIGHT)
caps the pipeline calls of one organization running at once, and the console login counts failed
logins per username and per client IP. If the cache is unreachable the limits are not enforced
rather than failing the call.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
import uuid

from django.conf import settings
from django.core.cache import cache
from rest_framework import exceptions
from rest_framework.throttling import BaseThrottle

from faceid.api.authentication import caller_for
from tenants.models import ApiKey

logger = logging.getLogger(__name__)

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    if not rate:
        return None
    count, _, period = rate.partition("/")
    return int(count), _PERIODS[period.strip()[0].lower()]


class CallerRateThrottle(BaseThrottle):
    scope = "api"

    def __init__(self) -> None:
        self._wait: float | None = None

    def caller_ident(self, request) -> str:
        if isinstance(request.auth, ApiKey):
            return f"key:{request.auth.prefix}"
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and getattr(user, "pk", None) is not None:
            return f"user:{user.pk}:{user.get_username()}"
        return f"ip:{self.get_ident(request)}"

    def allow_request(self, request, view) -> bool:
        parsed = parse_rate(getattr(settings, "FACEID_THROTTLE_RATES", {}).get(self.scope))
        if parsed is None:
            return True
        limit, period = parsed
        now = time.time()
        window = int(now // period)
        key = f"throttle:{self.scope}:{self.caller_ident(request)}:{period}:{window}"
        try:
            if cache.add(key, 1, timeout=period + 1):
                count = 1
            else:
                count = cache.incr(key)
        except Exception:  # noqa: BLE001 - cache down: do not turn it into an API outage
            logger.warning("rate limit cache unavailable; %s not enforced", self.scope, exc_info=True)
            return True
        if count > limit:
            self._wait = (window + 1) * period - now
            return False
        return True

    def wait(self) -> float | None:
        return self._wait


class PipelineRateThrottle(CallerRateThrottle):
    scope = "pipeline"


class OrganizationPipelineThrottle(CallerRateThrottle):
    """The pipeline calls of a whole organization (all its keys and console users) per window:
    a tenant with many keys cannot multiply its share of the shared inference queue."""

    scope = "org_pipeline"

    def caller_ident(self, request) -> str:
        caller = caller_for(request)
        if caller is None:
            return super().caller_ident(request)
        return f"org:{caller.organization.pk}"


# --- fair share of the inference queue -------------------------------------------------------------


class OrganizationBusy(exceptions.Throttled):
    default_detail = "Too many calls of this organization are in flight."
    default_code = "organization_busy"


def in_flight_limit() -> int:
    return int(getattr(settings, "API_ORG_MAX_IN_FLIGHT", 0) or 0)


def acquire_slot(organization_id: int, *, lease_seconds: float) -> str | None:
    """Take one of the organization's API_ORG_MAX_IN_FLIGHT slots; return its key (to release).

    A slot is a cache key that expires after ``lease_seconds``: a call whose process dies (or a job
    never finished) gives its slot back at the end of the lease instead of leaking it. Raises
    OrganizationBusy (429 with Retry-After) when every slot is taken; None when the bound is off
    or the cache is unreachable (not enforced rather than an outage).
    """
    limit = in_flight_limit()
    if limit <= 0:
        return None
    token = uuid.uuid4().hex
    # A random first slot spreads concurrent callers instead of all racing for slot 0.
    start = secrets.randbelow(limit)
    try:
        for offset in range(limit):
            key = f"inflight:{organization_id}:{(start + offset) % limit}"
            if cache.add(key, token, timeout=max(int(lease_seconds), 1)):
                return key
    except Exception:  # noqa: BLE001 - cache down: do not turn it into an API outage
        logger.warning("in-flight bound cache unavailable; not enforced", exc_info=True)
        return None
    raise OrganizationBusy(
        detail=f"This organization already has {limit} pipeline calls in flight; retry shortly.",
        wait=IN_FLIGHT_RETRY_AFTER,
    )


def release_slot(key: str | None) -> None:
    if not key:
        return
    try:
        cache.delete(key)
    except Exception:  # noqa: BLE001 - the lease expires anyway
        logger.warning("could not release in-flight slot %s", key, exc_info=True)


# Seconds a refused caller is told to wait: about one pipeline call.
IN_FLIGHT_RETRY_AFTER = 2


# --- console login ----------------------------------------------------------------------------------


def _failure_keys(kind: str, ident: str, rate: str | None) -> tuple[str, int, int, float] | None:
    parsed = parse_rate(rate)
    if parsed is None:
        return None
    limit, period = parsed
    now = time.time()
    window = int(now // period)
    digest = hashlib.sha256(ident.encode("utf-8")).hexdigest()[:32]
    return f"loginfail:{kind}:{digest}:{period}:{window}", limit, period, (window + 1) * period - now


def _login_idents(username: str, client_ip: str | None) -> list[tuple[str, str, str | None]]:
    # Usernames are e-mail addresses, compared case-insensitively: "Alice@x" is "alice@x".
    idents = [("user", username.strip().lower(), getattr(settings, "CONSOLE_LOGIN_FAILURE_LIMIT", None))]
    if client_ip:
        idents.append(("ip", client_ip, getattr(settings, "CONSOLE_LOGIN_IP_FAILURE_LIMIT", None)))
    return idents


def login_locked_for(username: str, client_ip: str | None) -> float | None:
    """Seconds until a login for this username from this address may be tried again; None if it may
    now. The same for a username that exists and one that does not: nothing is revealed."""
    wait = None
    for kind, ident, rate in _login_idents(username, client_ip):
        keys = _failure_keys(kind, ident, rate)
        if keys is None:
            continue
        key, limit, _, left = keys
        try:
            count = cache.get(key) or 0
        except Exception:  # noqa: BLE001
            logger.warning("login rate limit cache unavailable; not enforced", exc_info=True)
            return None
        if count >= limit:
            wait = max(wait or 0.0, left)
    return wait


def record_login_failure(username: str, client_ip: str | None) -> None:
    for kind, ident, rate in _login_idents(username, client_ip):
        keys = _failure_keys(kind, ident, rate)
        if keys is None:
            continue
        key, _, period, _ = keys
        try:
            if not cache.add(key, 1, timeout=period + 1):
                cache.incr(key)
        except Exception:  # noqa: BLE001
            logger.warning("login rate limit cache unavailable; failure not counted", exc_info=True)


def clear_login_failures(username: str) -> None:
    """After a successful login: that user's own count starts again (the address's does not)."""
    (kind, ident, rate), *_ = _login_idents(username, None)
    keys = _failure_keys(kind, ident, rate)
    if keys is not None:
        try:
            cache.delete(keys[0])
        except Exception:  # noqa: BLE001
            logger.warning("login rate limit cache unavailable", exc_info=True)
