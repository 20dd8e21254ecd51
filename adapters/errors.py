"""The one error family every adapter raises.

Callers branch on the class (retry or not) and report ``key``, a short stable code
(``timeout``, ``http_429``, ``http_404``, ``parse`` …) that is safe to store and log.
"""

from __future__ import annotations


class FetchError(Exception):
    """A fetch failed. ``key`` is a stable code, ``str(err)`` a one-line reason."""

    def __init__(self, key: str, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.http_status = http_status

    def __reduce__(self) -> tuple[object, ...]:
        # Pickled whole (a parse in a worker process raises it back to the poll): the
        # default would call the class with the message alone.
        return type(self), (self.key, str(self)), self.__dict__


class TransientError(FetchError):
    """Worth retrying later; ``retry_after`` (seconds) is the server's own wish."""

    def __init__(
        self,
        key: str,
        message: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(key, message, http_status=http_status)
        self.retry_after = retry_after


class PermanentError(FetchError):
    """Retrying soon will not help: the resource is gone or access is refused."""


class AuthError(PermanentError):
    """The source refused our credentials (401/403): a human has to act."""


class ParseError(FetchError):
    """The body arrived but is not something we can read (not a feed, too large …)."""
