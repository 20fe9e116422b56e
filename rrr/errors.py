"""One error tree for the whole library; `is_transient` decides what is worth retrying.

Foreign exceptions (psycopg, sqlite3, requests, websockets, redis) are mapped to these at the
edge that talks to the foreign library, with ``raise ... from exc``.
"""

from __future__ import annotations


class RrrError(Exception):
    """Base of every error rrr raises on purpose."""


class ConfigError(RrrError):
    """A setting is missing or malformed; the message names the variable and the fix."""


class ParseError(RrrError):
    """Input from a vendor could not be understood."""


class VendorError(RrrError):
    """A vendor API (Polygon/Massive, Perplexity, Supabase REST) refused or failed a request."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RateLimited(VendorError):
    """HTTP 429 or equivalent: wait, then try again."""

    def __init__(
        self, message: str, *, status: int | None = 429, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after_s = retry_after_s


class VendorUnavailable(VendorError):
    """5xx, timeout or connection failure: the vendor may recover by itself."""


class VendorAuthError(VendorError):
    """401/403 or auth_failed: a bad or unentitled key. Retrying never helps."""


class StorageError(RrrError):
    """The database refused or failed a write or read."""


class TransientStorageError(StorageError):
    """Connection lost, lock timeout, serialization failure: retry with backoff, never drop."""


class PermanentStorageError(StorageError):
    """Schema mismatch, bad credentials, constraint the data can never satisfy: dead-letter."""


_TRANSIENT: tuple[type[BaseException], ...] = (
    RateLimited,
    VendorUnavailable,
    TransientStorageError,
)


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same call later may succeed.

    Only rrr's own error tree is classified; anything foreign must be mapped at its edge first,
    so an unmapped exception is treated as permanent (a bug to look at, not to retry forever).
    """
    return isinstance(exc, _TRANSIENT)
