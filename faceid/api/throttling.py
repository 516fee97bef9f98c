"""Per-caller rate limits: fixed windows counted atomically in the Django cache (Redis).

Two buckets, set in settings.FACEID_THROTTLE_RATES as "<n>/<second|minute|hour|day>":
``api`` for every call, ``pipeline`` additionally for the calls that run the face pipeline
(enroll, verify, identify). The caller is the API key (its public prefix) or the console user.
If the cache is unreachable the limit is not enforced rather than failing the call.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

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
