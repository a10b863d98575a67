"""Which model answers a customer during a canary release: sticky by a hash of the customer id.

The hash is salted with the canary's version, so a customer stays on one model for a whole
release, every replica agrees without sharing state, and each release draws a fresh sample.
"""

import hashlib

_BUCKETS = 2**64


def in_canary(customer_id: int, share: float, canary_version: str) -> bool:
    """Whether ``customer_id`` is in the ``share`` of customers the canary serves."""
    digest = hashlib.blake2b(f"{canary_version}:{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < share * _BUCKETS
