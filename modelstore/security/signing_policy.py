"""Signing policies: which key or certificate must have signed which models.

A policy is data the *caller* gives (a TOML/JSON file or Python rules); nothing in a model
file can add to it. Used by ``load(signed_by=policy)``, ``Store(signed_by=policy)`` and
``modelstore verify --signed-by policy.toml``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ArgumentError, FormatError, ModelNotFoundError, SignatureError

PathLike = str | os.PathLike[str]


@dataclasses.dataclass(frozen=True)
class _Rule:
    kind: str  # "path" (a filesystem prefix) or "store" (a pattern over a store model name)
    pattern: str
    signed_by: Any


class SigningPolicy:
    """Which key (or certificate) must have signed which models.

    Rules are ``path`` prefixes (files and folders under them) or ``store`` patterns over
    store model names (``fnmatch``: ``"digits-*"``, ``"*"``); the longest matching pattern
    wins. A model no rule covers is refused (a policy never lets something through unsigned);
    add ``{"path": "/", ...}`` or ``{"store": "*", ...}`` for a default.

    From Python::

        policy = ms.SigningPolicy([{"path": "models/", "signed_by": "keys/team.pub"},
                                   {"store": "*", "signed_by": team_public_key}])

    From a TOML or JSON file (relative paths are relative to the file)::

        [[rule]]
        path = "models/"
        signed_by = "keys/team.pub"

        [[rule]]
        store = "digits-*"
        signed_by = "keys/ml-team.pem"     # a certificate: any signer it issued
    """

    def __init__(
        self, rules: list[Mapping[str, Any]] | Mapping[str, Any], *, base: PathLike | None = None
    ) -> None:
        self._base = Path(os.fspath(base)) if base is not None else None
        if isinstance(rules, Mapping):
            rules = rules.get("rule", rules.get("rules"))
        if not isinstance(rules, list) or not rules:
            raise ArgumentError(
                "a SigningPolicy needs a non-empty list of rules "
                "({'path': PREFIX or 'store': PATTERN, 'signed_by': KEY})"
            )
        self.rules: list[_Rule] = [self._rule(r) for r in rules]

    def _rule(self, r: Any) -> _Rule:
        if (
            not isinstance(r, Mapping)
            or set(r) - {"path", "store", "signed_by"}
            or "signed_by" not in r
        ):
            raise ArgumentError(
                f"a policy rule has 'path' or 'store', and 'signed_by', nothing else: {r!r}"
            )
        kinds = [k for k in ("path", "store") if k in r]
        if len(kinds) != 1 or not isinstance(r[kinds[0]], str) or not r[kinds[0]]:
            raise ArgumentError(
                f"a policy rule has exactly one of 'path' or 'store' (a non-empty string): {r!r}"
            )
        key = r["signed_by"]
        if isinstance(key, str) and self._base is not None and not os.path.isabs(key):
            key = str(self._base / key)
        pattern = r[kinds[0]]
        if kinds[0] == "path":
            pattern = os.path.abspath(self._base / pattern if self._base is not None else pattern)
        return _Rule(kinds[0], pattern, key)

    @classmethod
    def load(cls, path: PathLike) -> SigningPolicy:
        """Read a policy from a ``.toml`` or ``.json`` file."""
        p = Path(os.fspath(path))
        try:
            raw = p.read_bytes()
        except OSError as e:
            raise ModelNotFoundError(
                e.errno or 2, f"{p}: cannot read the signing policy ({e.strerror})", str(p)
            ) from None
        if len(raw) > 1 << 20:
            raise FormatError(f"{p}: a signing policy over 1 MiB is not a policy")
        if p.suffix.lower() == ".toml":
            import tomllib

            try:
                data: Any = tomllib.loads(raw.decode("utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                raise FormatError(f"{p}: the signing policy is not valid TOML ({e})") from None
        else:
            from .jsonsafe import loads

            data = loads(raw, where=f"{p}: the signing policy", max_bytes=1 << 20)
        return cls(data, base=p.parent.resolve())

    def signer_for(self, path: PathLike | None = None, *, store_name: str | None = None) -> Any:
        """The ``signed_by`` that applies to a file path or a store model name; SignatureError
        if no rule covers it."""
        best: _Rule | None = None
        for rule in self.rules:
            if (
                store_name is not None
                and rule.kind == "store"
                and fnmatch.fnmatchcase(store_name, rule.pattern)
            ):
                hit = True
            elif path is not None and rule.kind == "path":
                full = os.path.abspath(os.fspath(path))
                hit = full == rule.pattern or full.startswith(rule.pattern.rstrip(os.sep) + os.sep)
            else:
                hit = False
            if hit and (best is None or len(rule.pattern) > len(best.pattern)):
                best = rule
        if best is None:
            what = f"the store model {store_name!r}" if store_name is not None else f"{path}"
            raise SignatureError(
                f"{what}: no rule of the signing policy covers it, so it is refused; "
                f"add a rule for it"
            )
        return best.signed_by

    def __repr__(self) -> str:
        return f"SigningPolicy({[(r.kind, r.pattern) for r in self.rules]!r})"


def resolve_signer(
    signed_by: Any, path: PathLike | None = None, *, store_name: str | None = None
) -> Any:
    """``signed_by`` itself, or what a policy (object or policy file path) says for the model."""
    if isinstance(signed_by, SigningPolicy):
        return signed_by.signer_for(path, store_name=store_name)
    if signed_by is None:
        raise ArgumentError(
            "signed_by must be a public key, certificate or SigningPolicy, not None"
        )
    return signed_by
