"""What the relay asks of the C library: found on this platform (Linux, glibc), absent names are
None rather than an error, and the allocator setting takes effect."""

from __future__ import annotations

import platform

import pytest

from relay import libc


def test_missing_functions_are_none() -> None:
    assert libc.function("relay_no_such_function") is None


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_functions_are_found_and_the_threshold_is_set() -> None:
    assert libc.function("syncfs") is not None
    assert libc.keep_large_blocks_mapped() is True
