"""Domain errors, defined once and mapped once to HTTP statuses by the handlers.

Each error carries a stable ``code`` that clients and alarms can key on, a message a person can
act on (what was expected, what came) and optional ``details``. Messages never include stack
traces or the text of a dependency's exception.
"""

from __future__ import annotations

from typing import Any


class MaasError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


class BadRequest(MaasError):
    """The request body cannot be read: not JSON, not the expected envelope."""

    status = 400
    code = "bad_request"


class InvalidName(MaasError):
    status = 400
    code = "invalid_name"


class InvalidInput(MaasError):
    """The body parsed but its tensors do not fit the model's inputs."""

    status = 400
    code = "invalid_input"


class PayloadTooLarge(MaasError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(MaasError):
    status = 415
    code = "unsupported_media_type"


class InvalidRequest(MaasError):
    """The JSON envelope does not match the route's request schema."""

    status = 422
    code = "invalid_request"


class BatchFileError(MaasError):
    """A batch file as a whole cannot be scored (format, header, layout): retrying will not help."""

    status = 400
    code = "batch_file_invalid"


class ModelNotFound(MaasError):
    status = 404
    code = "model_not_found"


class VersionNotFound(MaasError):
    status = 404
    code = "version_not_found"


class AliasNotFound(MaasError):
    status = 404
    code = "alias_not_found"


class VersionExists(MaasError):
    """Versions are immutable: a second write of the same version is refused."""

    status = 409
    code = "version_exists"


class AliasConflict(MaasError):
    """The alias changed between read and write (compare-and-swap lost)."""

    status = 409
    code = "alias_conflict"


class VersionInUse(MaasError):
    """A version an alias (or its canary) still names cannot be deleted."""

    status = 409
    code = "version_in_use"


class ModelRejected(MaasError):
    """A model offered for publishing does not load in the serving onnxruntime or does not match its manifest."""

    status = 422
    code = "model_rejected"


class ModelTooLarge(MaasError):
    """A model offered for publishing needs more memory or ephemeral storage than the function that serves it has."""

    status = 422
    code = "model_too_large"


class ModelTooLargeHere(ModelTooLarge):
    """A request for a model this function is configured too small to load; it keeps serving what it holds."""

    status = 507


class RegistryUnavailable(MaasError):
    """S3 could not be reached or answered with an error we cannot act on."""

    status = 503
    code = "registry_unavailable"


class ModelIntegrityError(MaasError):
    """The stored model does not match its manifest (hash, size) or its manifest is unreadable."""

    status = 503
    code = "model_integrity_error"


class ModelLoadError(MaasError):
    """onnxruntime could not build a session from a model that passed its hash check."""

    status = 503
    code = "model_load_failed"


class AliasTargetMissing(MaasError):
    """An alias names a version that is no longer in the registry (deleted after the alias was set)."""

    status = 503
    code = "alias_target_missing"


class VersionCorrupt(MaasError):
    """A version whose model.onnx is missing, differs from its manifest or does not load: no alias may name it."""

    status = 409
    code = "version_corrupt"


class AliasUnreadable(MaasError):
    """A change that keeps part of an unreadable alias (its version, its previous version) has nothing to keep."""

    status = 409
    code = "alias_unreadable"
