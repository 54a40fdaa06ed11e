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


class ParameterError(EvalError):
    """A setting the library refuses, named as the library names it (``limit``, ``sdp_rate``). ``template`` has
    ``{0}``, ``{1}``... where the settings' names go; the CLI fills them with its flags (``--limit``, ``--sdp``)
    through :meth:`say`."""

    def __init__(self, template: str, *params: str):
        super().__init__(template.format(*params))
        self.template, self.params = template, params

    def say(self, flags: dict[str, str]) -> str:
        """The message with each setting named by its flag (``flags``: setting -> flag; others keep their name)."""
        return self.template.format(*(flags.get(p, p) for p in self.params))
