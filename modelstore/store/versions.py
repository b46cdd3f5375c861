"""Reading a store: names, versions, aliases and references resolved to manifests, each manifest
read as hostile input and each local model file confined to the store."""

from __future__ import annotations

import builtins
import errno
from typing import Any

from ..errors import ArgumentError, FormatError, ModelNotFoundError
from ..security.confine import check_name, confine
from ..storage import remote as _remote
from .folder import _FIX, _NAME, _Folder
from .records import _MAX_DIGITS, ModelVersion, _number, _size, _text


class _Versions(_Folder):
    """The read side of :class:`~modelstore.store.Store`: listing, resolving and checking versions."""

    def list(self) -> list[str]:
        """Names with at least one published version, sorted."""
        names = []
        for name in self._ls(self._root):
            if _NAME.match(name) and any(
                n.endswith(".json") for n in self._ls(self._p(name, "versions"))
            ):
                names.append(name)
        return sorted(names)

    def versions(self, name: str) -> builtins.list[ModelVersion]:
        """Every published version of ``name``, oldest first."""
        self._check_name(name)
        aliases = self._aliases(name)
        out = []
        for entry in self._ls(self._p(name, "versions")):
            number = _number(entry[: -len(".json")]) if entry.endswith(".json") else None
            if number is not None:
                manifest = self._read_json(self._p(name, "versions", entry))
                if manifest is not None:  # deleted between the listing and the read
                    out.append(self._version(name, number, manifest, aliases))
        return sorted(out, key=lambda v: v.version)

    def _latest(self, name: str, aliases: dict[str, int]) -> ModelVersion | None:
        """The highest published version from one listing and one manifest read (not every
        manifest: a load of the latest costs the same at 10 versions and at 10,000). A manifest
        deleted between the listing and the read falls back to the next highest."""
        numbers = sorted(
            (
                n
                for n in (
                    _number(e[: -len(".json")])
                    for e in self._ls(self._p(name, "versions"))
                    if e.endswith(".json")
                )
                if n is not None
            ),
            reverse=True,
        )
        for number in numbers:
            manifest = self._read_json(self._vdir(name, number) + ".json")
            if manifest is not None:
                return self._version(name, number, manifest, aliases)
        return None

    def _version(
        self, name: str, number: int, m: dict[str, Any], aliases: dict[str, int]
    ) -> ModelVersion:
        """A manifest read as hostile input: names lead only into the version's folder
        (ConfinementError), every field has its type and sizes their range (FormatError)."""
        where = self._public(self._vdir(name, number) + ".json")
        try:
            entry, files, tags = m["entry"], m.get("files") or {}, m.get("tags") or {}
            metadata, framework = m.get("metadata") or {}, m.get("framework")
            if not (
                isinstance(entry, str)
                and isinstance(files, dict)
                and isinstance(metadata, dict)
                and isinstance(tags, dict)
                and all(isinstance(v, str) for v in tags.values())
            ):
                raise TypeError("entry, files, metadata or tags")
            if framework is not None and not isinstance(framework, str):
                raise TypeError("framework")
            version = ModelVersion(
                name=name,
                version=number,
                path=_remote.join(self._public(self._vdir(name, number)), entry),
                format=_text(m["format"]),
                framework=framework,
                created=_text(m["created"]),
                size_bytes=_size(m["size_bytes"]),
                sha256=_text(m.get("sha256") or ""),
                files={k: _size(v) for k, v in files.items()},
                metadata=dict(metadata),
                tags=dict(tags),
                aliases=sorted(a for a, v in aliases.items() if v == number),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise FormatError(
                f"{where}: the version manifest is malformed ({e}); the store entry is damaged"
            ) from None
        for rel in (entry, *files):  # names lead nowhere but into the version's folder
            check_name(rel, what="the version file", source=where)
        return version

    def _entry(self, version: ModelVersion) -> str:
        """The version's model file to read: locally confined to the store (the entry, the
        version folder and every folder on the way: no link leading out, no hard link, no
        FIFO), returned as its real path; remote entries as their URI (checked by name)."""
        if not self._local:
            return version.path
        vdir = self._vdir(version.name, version.version)
        entry = version.path[len(self._public(vdir)) :].lstrip("/")
        return str(
            confine(
                self._root,
                _remote.join(self._rel(vdir), entry),
                what="the version's model file",
                source=self._public(vdir + ".json"),
                todo=_FIX,
            )
        )

    def _aliases(self, name: str) -> dict[str, int]:
        out = {}
        for entry in self._ls(self._p(name, "aliases")):
            if entry.endswith(".json"):
                data = self._read_json(self._p(name, "aliases", entry)) or {}
                version = data.get("version")
                if type(version) is int and 0 < version < 10**_MAX_DIGITS:
                    out[entry[: -len(".json")]] = version
        return out

    def resolve(self, ref: str) -> ModelVersion:
        """``"name"`` (latest), ``"name@3"``, ``"name@prod"`` (an alias) or ``"name@latest"``."""
        if not isinstance(ref, str):
            raise ArgumentError(
                f"a model reference is a string like 'digits@3', not {type(ref).__name__}"
            )
        name, _, which = ref.partition("@")
        self._check_name(name)
        number = _number(which)
        if which and number is None and (not _NAME.match(which) or which.isdigit()):
            msg = (
                f"{ref[:200]!r} is not a valid model reference: after '@' comes a version number "
                f"(at most {_MAX_DIGITS} digits 0-9), an alias or 'latest'"
            )
            raise ArgumentError(msg)
        aliases = self._aliases(name)
        if which in ("", "latest"):
            latest = self._latest(name, aliases)
            if latest is None:
                raise ModelNotFoundError(
                    errno.ENOENT,
                    f"{self._public(self._p(name))}: no versions of "
                    f"{name!r} in {self.root}; save one with store.save(model, {name!r})",
                    ref,
                )
            return latest
        if number is None and which in aliases:
            number = aliases[which]
        elif number is None:
            known = ", ".join(sorted(aliases)) or "none"
            raise ModelNotFoundError(
                errno.ENOENT,
                f"{ref}: no version or alias {which!r} of {name!r} in "
                f"{self.root} (aliases: {known})",
                ref,
            )
        manifest = self._read_json(self._vdir(name, number) + ".json")
        if manifest is None:
            have = ", ".join(str(v.version) for v in self.versions(name)) or "none"
            raise ModelNotFoundError(
                errno.ENOENT,
                f"{ref}: version {number} of {name!r} does not exist in "
                f"{self.root} (versions: {have})",
                ref,
            )
        return self._version(name, number, manifest, aliases)

    def info(self, ref: str) -> ModelVersion:
        """The manifest of one version (what ``modelstore store show`` prints). Locally, its
        model file must be the store's own (a link leading out is refused, as by ``load``)."""
        version = self.resolve(ref)
        self._entry(version)
        return version

    def path(self, ref: str) -> str:
        """The path or URI of a version's model file, for :func:`modelstore.load` and friends."""
        return self._entry(self.resolve(ref))
