"""ringline.momento: a client of Momento's cache service (``cache_client.Scs``
as the ``momento-wire-types`` package defines it) on ringline.grpc.

    credential = momento.Credential.from_environment_variables_v2()
    async with momento.CacheClient(credential, momento.Configuration.in_region(),
                                   default_ttl=60) as client:
        await client.set("cache", "k", "v")
        assert await client.get("cache", "k") == b"v"

Layout: ``_credentials`` (API key -> key + endpoint), ``_config``
(deadline, retries, channels), ``_errors`` (MomentoError family), ``_pb``
(the wire types), ``_transport`` (channels, metadata, retries), ``_client``
(the commands). Results are plain values (bytes / None for a miss / int);
failures raise MomentoError. See docs/momento.md.
"""
from ._client import CacheClient
from ._config import RETRYABLE_STATUSES, Configuration
from ._credentials import Credential
from ._errors import (AuthenticationError, CancelledError, ErrorCode, FailedPreconditionError,
                      InternalServerError, InvalidArgumentError, LimitExceededError,
                      MomentoError, NotFoundError, PermissionDeniedError, ServerUnavailableError,
                      TimeoutError)

__all__ = ["CacheClient", "Configuration", "Credential", "RETRYABLE_STATUSES", "ErrorCode",
           "MomentoError", "InvalidArgumentError", "AuthenticationError", "PermissionDeniedError",
           "NotFoundError", "LimitExceededError", "TimeoutError", "ServerUnavailableError",
           "InternalServerError", "CancelledError", "FailedPreconditionError"]
