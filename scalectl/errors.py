"""Errors raised by the library. The CLI prints their message as one red line."""


class ScalectlError(Exception):
    """Base class: a problem with the user's input or environment, with a message that says what to do."""

    exit_code = 1


class AdapterError(ScalectlError):
    """An adapter directory or weight file is missing, malformed or inconsistent."""


class IntegrityError(ScalectlError):
    """A registered weight file no longer matches its recorded sha256."""

    exit_code = 3


class RegistryError(ScalectlError):
    """A registry lookup or write failed (unknown name, duplicate, base mismatch)."""


class ManifestError(ScalectlError):
    """A pool manifest is malformed."""


class BackboneError(ScalectlError):
    """The base model could not be resolved or loaded."""


class HubError(ScalectlError):
    """A hub id could not be resolved (offline, missing from cache, or not an adapter)."""


class TaskError(ScalectlError):
    """A task, suite, skill or benchmark file is unknown or malformed."""


class EvalError(ScalectlError):
    """An evaluation or training run could not be set up or recorded."""


class RetrievalError(ScalectlError):
    """An embedding index or a retrieval request is missing, stale or malformed (unknown view, wrong embedder)."""
