"""The LLM gateway's API keys: one per use case, read from the environment, kept only hashed.

A caller sends its key OpenAI-style, ``Authorization: Bearer <key>``; the key says which use
case(s) it may ask (``model`` in a chat request). Variables, with the use case upper-cased and
every character other than a letter or digit made ``_`` (``fraud_ops_assistant`` ->
``FRAUD_OPS_ASSISTANT``):

- ``FLYWHEEL_LLM_KEY_<USE_CASE>``: the key in clear (several, comma-separated, while rotating).
  The gateway hashes it when it starts and keeps only the SHA-256 digest;
- ``FLYWHEEL_LLM_KEY_SHA256_<USE_CASE>``: or only its SHA-256 hex digest (comma-separated too), so
  that the clear key is stored nowhere on the gateway's side. ``hash_key`` computes it.

Make a key with ``python -c "import secrets; print('fw-' + secrets.token_urlsafe(32))"``.

Without any variable for a use case:

- ``local``: the use case accepts the development key ``DEV_KEY`` (``flywheel-local-dev-key``),
  so ``make dev`` and a laptop need no setup; the gateway refuses to listen on anything but
  loopback while a use case is on it;
- ``prod``: the gateway does not start, and the error names the variables to set.

Presented keys are hashed and compared with every stored digest in constant time.
"""

import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DEV_KEY = "flywheel-local-dev-key"
KEY_VARIABLE = "FLYWHEEL_LLM_KEY_{}"
HASH_VARIABLE = "FLYWHEEL_LLM_KEY_SHA256_{}"
_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class MissingApiKeys(ValueError):
    """A use case has no key in an environment that requires one (``prod``)."""


def hash_key(key: str) -> str:
    """The SHA-256 hex digest of ``key``: what ``FLYWHEEL_LLM_KEY_SHA256_<USE_CASE>`` holds."""
    return hashlib.sha256(key.encode()).hexdigest()


def variable_suffix(use_case: str) -> str:
    """The use case as it appears in a variable name: upper-case letters, digits and ``_``."""
    return re.sub(r"[^A-Z0-9]", "_", use_case.upper())


@dataclass(frozen=True)
class ApiKeys:
    """SHA-256 digests of the accepted keys, each with the use case it opens.

    Attributes:
        digests: (digest, use case) pairs; one key may open several use cases.
        development: Use cases opened by ``DEV_KEY`` (local only, none in ``prod``).
    """

    digests: tuple[tuple[bytes, str], ...]
    development: frozenset[str] = frozenset()

    @classmethod
    def of(cls, keys: Mapping[str, str | Iterable[str]]) -> "ApiKeys":
        """Keys given in clear, per use case (tests, benchmarks, embedding the app)."""
        pairs = []
        for use_case, given in keys.items():
            for key in [given] if isinstance(given, str) else given:
                pairs.append((hashlib.sha256(key.encode()).digest(), use_case))
        return cls(tuple(pairs))

    @classmethod
    def from_environment(
        cls, use_cases: Iterable[str], env: str, environ: Mapping[str, str] | None = None
    ) -> "ApiKeys":
        """The keys of ``use_cases`` from the variables above (``environ``: ``os.environ``).

        Raises:
            MissingApiKeys: In ``prod``, naming every use case without a key and its variables.
            ValueError: A ``_SHA256`` variable holds something other than 64 hex digits.
        """
        environ = os.environ if environ is None else environ
        pairs: list[tuple[bytes, str]] = []
        keyless = []
        for use_case in sorted(use_cases):
            suffix = variable_suffix(use_case)
            clear = _split(environ.get(KEY_VARIABLE.format(suffix), ""))
            hashed = _split(environ.get(HASH_VARIABLE.format(suffix), ""))
            for digest in hashed:
                if not _HEX_DIGEST.match(digest.lower()):
                    raise ValueError(
                        f"{HASH_VARIABLE.format(suffix)} must hold SHA-256 hex digests "
                        "(64 hex digits each, comma-separated)"
                    )
            pairs += [(hashlib.sha256(key.encode()).digest(), use_case) for key in clear]
            pairs += [(bytes.fromhex(digest), use_case) for digest in hashed]
            if not clear and not hashed:
                keyless.append(use_case)
        if keyless and env != "local":
            variables = ", ".join(
                f"{KEY_VARIABLE.format(variable_suffix(u))} (or "
                f"{HASH_VARIABLE.format(variable_suffix(u))})"
                for u in keyless
            )
            raise MissingApiKeys(
                f"FLYWHEEL_ENV={env}: no API key for use case(s) {', '.join(keyless)}; "
                f"set {variables}"
            )
        development = frozenset(keyless)
        dev_digest = hashlib.sha256(DEV_KEY.encode()).digest()
        return cls(tuple(pairs) + tuple((dev_digest, u) for u in sorted(development)), development)

    def use_cases(self, key: str) -> frozenset[str]:
        """The use cases ``key`` opens (empty for an unknown key).

        Every stored digest is compared, in constant time, whatever matched before.
        """
        presented = hashlib.sha256(key.encode()).digest()
        opened = set()
        for digest, use_case in self.digests:
            if hmac.compare_digest(presented, digest):
                opened.add(use_case)
        return frozenset(opened)


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]
