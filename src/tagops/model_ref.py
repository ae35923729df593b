"""What a user names as "the model": ``models:/NAME@ALIAS``, ``models:/NAME/N`` or a model folder.

:meth:`ModelRef.parse` is the one place that reads this grammar; everything that takes a model reference
as text (configs, CLI options, the registry, the loaders, the server) parses it here and reads the fields.
:data:`DEFAULT_MODEL` is the reference used when none is given. Imports nothing but the standard library
and :mod:`tagops.errors`, so any layer can use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tagops.errors import RegistryError

#: The prefix of a registry reference.
REGISTRY_SCHEME = "models:/"
#: The alias the promotion gate gives the model to serve.
CHAMPION = "champion"
#: The alias every newly trained model gets.
CHALLENGER = "challenger"
_REGISTRY_REFERENCE = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference: a registry alias, a registry version, or a model folder.

    Exactly one of ``alias``, ``version`` and ``folder`` is set; ``name`` is set for registry references.
    """

    name: str | None = None
    alias: str | None = None
    version: int | None = None
    folder: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Read ``models:/NAME@ALIAS``, ``models:/NAME/N``, or anything else as a folder path.

        Raises:
            RegistryError: ``text`` starts with ``models:/`` but is neither registry form.

        """
        if not text.startswith(REGISTRY_SCHEME):
            return cls(folder=text)
        match = _REGISTRY_REFERENCE.match(text)
        if match is None:
            raise RegistryError(
                f"{text}: not a model URI (expected models:/NAME@ALIAS or models:/NAME/VERSION)"
            )
        if match["alias"]:
            return cls(name=match["name"], alias=match["alias"])
        return cls(name=match["name"], version=int(match["version"]))

    @classmethod
    def registered(cls, name: str, version: int | str) -> ModelRef:
        """``models:/NAME/VERSION``: the reference to one immutable registry version."""
        return cls(name=name, version=int(version))

    @property
    def in_registry(self) -> bool:
        """Whether this names a registry alias or version (not a folder)."""
        return self.folder is None

    def __str__(self) -> str:
        if self.folder is not None:
            return self.folder
        if self.alias is not None:
            return f"{REGISTRY_SCHEME}{self.name}@{self.alias}"
        return f"{REGISTRY_SCHEME}{self.name}/{self.version}"


#: The model ``tagops`` serves, evaluates and predicts with unless told otherwise.
DEFAULT_MODEL = ModelRef(name="tagops", alias=CHAMPION)
#: :data:`DEFAULT_MODEL` as text, for configs and command-line defaults.
DEFAULT_MODEL_URI = str(DEFAULT_MODEL)
