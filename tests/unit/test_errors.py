import pytest

from rrr.errors import (
    ConfigError,
    ParseError,
    PermanentStorageError,
    RateLimited,
    TransientStorageError,
    VendorAuthError,
    VendorError,
    VendorUnavailable,
    is_transient,
)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (RateLimited("429", retry_after_s=2), True),
        (VendorUnavailable("503", status=503), True),
        (TransientStorageError("connection lost"), True),
        (VendorAuthError("401", status=401), False),
        (VendorError("400", status=400), False),
        (PermanentStorageError("check violation"), False),
        (ParseError("bad frame"), False),
        (ConfigError("bad url"), False),
        (ValueError("unmapped foreign error"), False),
        (ConnectionError("unmapped foreign error"), False),
    ],
)
def test_is_transient(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient
