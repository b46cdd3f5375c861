"""The allow-list as a lookup: a stream's ``(module, name)`` -> :class:`~.allowlist.Entry` ->
the one object it stands for, imported only from installed code.

Lookups are exact: no prefixes, no capitalisation rules, no attribute paths beyond what an
entry spells. Resolving an entry imports its module through :func:`.origin.import_trusted`
(never from the current directory or another path a model's folder could plant code in) and
takes the attribute with plain ``getattr`` calls along the entry's own name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import MissingDependencyError, UnsafeModelError
from .allowlist import JOBLIB, NUMPY, PLAIN, SCIPY, TORCH, Entry, is_attack


class Policy:
    """An allow-list: exact lookups and resolution of its entries."""

    def __init__(self, *tables: Iterable[Entry]) -> None:
        self._by_pair: dict[tuple[str, str], Entry] = {}
        for table in tables:
            for e in table:
                self._by_pair[(e.module, e.name)] = e
        self._resolved: dict[tuple[str, str], Any] = {}

    def __contains__(self, qualname: object) -> bool:
        if not isinstance(qualname, str):
            return False
        module, _, name = qualname.rpartition(".")
        return (module, name) in self._by_pair

    def __len__(self) -> int:
        return len(self._by_pair)

    def entries(self) -> list[Entry]:
        return list(self._by_pair.values())

    def entry(self, module: str, name: str) -> Entry | None:
        return self._by_pair.get((module, name))

    def resolve(self, entry: Entry, where: str) -> Any:
        """The object ``entry`` stands for (cached per process)."""
        key = entry.target
        obj = self._resolved.get(key)
        if obj is None:
            obj = _lookup(*key, where)
            self._resolved[key] = obj
        return obj

    def resolve_trusted(self, module: str, name: str, where: str) -> Any:
        """An object the caller named in ``trust=[...]``: still imported from installed code
        only, and found along exactly the name the caller trusted."""
        return _lookup(module, name, where)


def _lookup(module: str, qualname: str, where: str) -> Any:
    from .origin import import_trusted

    try:
        obj: Any = import_trusted(module)
    except ModuleNotFoundError as e:
        top = module.split(".")[0]
        msg = (
            f"{where}: the model needs the module {module!r}, which is not installed; install "
            f"the package that provides it (e.g. pip install {top})"
        )
        raise MissingDependencyError(msg, name=e.name) from None
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            msg = (
                f"{where}: the model needs {module}.{qualname}, which this version of "
                f"{module.split('.')[0]} does not have; install the version the model was saved with"
            )
            raise MissingDependencyError(msg, name=module) from None
    return obj


def refusal(where: str, names: list[tuple[str, str]]) -> UnsafeModelError:
    """The refusal for globals outside the allow-list. A known code-execution primitive is
    called an attack, with no ``trust=[...]`` recipe; other names get the exact recipe."""
    keys = [f"{m}.{n}" for m, n in names]
    attacks = [k for (m, n), k in zip(names, keys) if is_attack(m, n)]
    if attacks:
        msg = (
            f"{where}: refusing to load: the file calls {', '.join(attacks)}, which runs code, "
            f"touches files or the network, or imports other code. This is an attack payload, "
            f"not a model; nothing from the file was executed. Do not load this file"
        )
    else:
        recipe = ", ".join(repr(k) for k in keys)
        msg = (
            f"{where}: refusing to load: the file references {', '.join(keys)} (imported and "
            f"run by unpickling; not on modelstore's allow-list). Nothing from the file was "
            f"executed. If you trust the file's author, pass trust=[{recipe}] "
            f"(or trust=True to allow anything)"
        )
    return UnsafeModelError(msg, keys)


def _sklearn() -> list[Entry]:
    from .allowlist_sklearn import ENTRIES

    return ENTRIES


#: The allow-list of general pickles: plain data, numpy, joblib arrays, scipy, scikit-learn.
GENERAL = Policy(PLAIN, NUMPY, JOBLIB, SCIPY, _sklearn())

#: The allow-list torch's own weights_only unpickler enforces, for scanning ``.pt`` files.
TORCH_POLICY = Policy(TORCH)
