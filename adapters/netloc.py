"""Host names and addresses, for the checks that allow plain http:// only on loopback.

Kept apart from adapters/http.py so that validating a configuration does not import
the HTTP client.
"""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
