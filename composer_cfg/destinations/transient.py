"""Is an error worth retrying? Decided by its type and codes, never by the words of its message.

Transient: a connection refused, reset or timed out (`ConnectionError`, `TimeoutError`, the
matching ``errno`` values), botocore's HTTP client errors, aiohttp's connection errors, and
responses that say "try again" (HTTP 408, 425, 429, 500, 502, 503, 504, or S3's ``SlowDown``,
``ServiceUnavailable``, ``RequestTimeout``, ``InternalError`` and throttling codes). The error's
``__cause__``/``__context__`` chain is searched too, since fsspec file systems re-raise the
client's error as an `OSError`. Everything else (permission, not found, already exists) is
permanent.
"""

from __future__ import annotations

import errno
import sys
from typing import Any

TRANSIENT_ERRNOS = frozenset({
    errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EPIPE, errno.EAGAIN,
    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.ENETRESET,
})
TRANSIENT_HTTP_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
TRANSIENT_ERROR_CODES = frozenset({
    "SlowDown", "ServiceUnavailable", "RequestTimeout", "RequestTimeoutException", "InternalError",
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled", "RequestLimitExceeded",
    "TooManyRequestsException", "BandwidthLimitExceeded", "PriorRequestNotComplete",
})


def is_transient(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, says the same request may succeed later."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _transient(current):
            return True
        # `raise ... from None` cuts the chain: what was being handled is not this error's cause
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return False


def _transient(error: BaseException) -> bool:
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    if isinstance(error, OSError) and error.errno in TRANSIENT_ERRNOS:
        return True
    botocore = sys.modules.get("botocore.exceptions")
    if botocore is not None:
        if isinstance(error, botocore.HTTPClientError) and not isinstance(error, botocore.SSLError):
            return True
        if isinstance(error, botocore.ClientError):
            return _transient_response(error.response)
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None and isinstance(error, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        return True
    return False


def _transient_response(response: Any) -> bool:
    code = (response.get("Error") or {}).get("Code")
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return code in TRANSIENT_ERROR_CODES or status in TRANSIENT_HTTP_STATUSES
