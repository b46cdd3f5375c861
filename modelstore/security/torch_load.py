"""One pass over a ``torch.save`` archive: the restricted unpickler is the check *and* the loader.

``ms.load`` of an untrusted ``.pt`` used to walk ``data.pkl`` twice in pure Python: the static
scan (:mod:`.pickle_scan`), then torch's own ``weights_only`` unpickler. Here torch keeps
everything that is not the pickle (the zip reader, storage offsets, ``mmap``, byte order,
``map_location``) and the pickle itself is read once, by :class:`TorchUnpickler`, a
:class:`~.pickle_load.RestrictedUnpickler` under the torch allow-list, handed to ``torch.load``
as its ``pickle_module`` (``weights_only=False`` there only means "use this unpickler").

What each check of the scan becomes (the scan keeps them all, for ``ms.scan``):

- **globals**: every ``GLOBAL``/``STACK_GLOBAL`` is looked up, as spelled (after Python 2
  name mapping), in the torch allow-list *before* torch's own ``find_class`` runs (which would
  otherwise turn any name holding "Storage" into a storage type); what the stream gets is the
  listed object, or torch's inert ``StorageType`` for a listed storage class;
- **calls**: ``REDUCE`` only of ``call`` entries, each through a validator below (tensor
  views inside their storage, empty backward hooks, plain sizes); entries without one here
  raise :class:`Unsupported` before anything is called, and the caller falls back to the
  two-pass path (scan, then torch's ``weights_only``) that reads them today;
- **persistent ids**: only ``('storage', <listed storage type>, '<digits>', <str>, <int>)``,
  the form ``torch.save`` writes; the storage comes from torch's reader of that record;
- **mutation**: ``BUILD`` only on an ``OrderedDict`` the stream made (torch's ``_metadata``),
  with names that shadow nothing; everything else as in :mod:`.pickle_load` (no mutation of
  what a lookup returned, dict keys with uncollidable hashes);
- **framing, trailing data, bounded reads**: the same :class:`~.pickle_stream.StreamReader`;
  nothing may follow ``STOP``.

The zip container is still checked first (:func:`.torchfile.check_zip`): that costs a walk
over the central directory, not over the pickle.
"""

from __future__ import annotations

import io
import re
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .allowlist import CALL
from .pickle_load import LoadState, RestrictedUnpickler
from .pickle_stream import Limits, MemorySource, PickleStreamError, expect_end
from .policy import TORCH_POLICY

_KEY = re.compile(r"\d{1,12}")
#: Calls read here; the other torch ``call`` entries (sparse, quantized, meta, subclass
#: tensors, parameters with state, layouts) go through the two-pass path.
_TENSOR_V2 = "torch._utils:_rebuild_tensor_v2"
_TENSOR = "torch._utils:_rebuild_tensor"
_PARAMETER = "torch._utils:_rebuild_parameter"


class Unsupported(Exception):
    """The stream uses an allowed construct this reader does not rebuild itself; nothing it
    names has been called. The caller loads the file the two-pass way instead."""


class TorchUnpickler(RestrictedUnpickler):
    """:class:`RestrictedUnpickler` for ``data.pkl`` of a torch archive (see module docstring).
    ``torch.load`` subclasses it (its ``find_class`` wrapper) and sets ``persistent_load``."""

    persistent_load: Any = None

    def __init__(self, file: Any, *, where: str, limits: Limits, **_: Any) -> None:
        data = file.getvalue() if isinstance(file, io.BytesIO) else file.read()
        state = LoadState(where, TORCH_POLICY, frozenset(), limits)
        super().__init__(MemorySource(data), state)
        self.storages: dict[int, Any] = {}
        self.tensors: dict[int, Any] = {}

    def load(self) -> Any:
        obj = super().load()
        expect_end(self)
        self.state.finish(obj)
        return obj

    # ---- globals: the spelling is checked before torch's find_class sees it

    def _checked_global(self, module: str, name: str) -> Any:
        mapped = self.mapped(module, name)
        if TORCH_POLICY.entry(*mapped) is None:
            from .policy import refusal

            raise refusal(self.where, [mapped])
        return self.find_class(module, name)

    def load_global(self) -> None:
        module = self.readline()[:-1].decode("utf-8")
        name = self.readline()[:-1].decode("utf-8")
        self.append(self._checked_global(module, name))

    def load_stack_global(self) -> None:
        name = self.stack.pop()
        module = self.stack.pop()
        if type(name) is not str or type(module) is not str:
            raise PickleStreamError("STACK_GLOBAL requires str")
        self.append(self._checked_global(module, name))

    # ---- persistent ids: storages, in the one form torch.save writes

    def load_binpersid(self) -> None:
        pid = self.stack.pop()
        self.append(self._storage(pid))

    def _storage(self, pid: Any) -> Any:
        import torch
        from torch.serialization import StorageType

        st = self.state
        ok = (
            type(pid) is tuple
            and len(pid) == 5
            and pid[0] in ("storage", b"storage")
            and (
                type(pid[1]) is StorageType
                or (pid[1] is torch.UntypedStorage and id(pid[1]) in st.external)
            )
            and type(pid[2]) is str
            and _KEY.fullmatch(pid[2]) is not None
            and type(pid[3]) in (str, bytes)
            and type(pid[4]) is int
            and 0 <= pid[4] < (1 << 50)
        )
        if not ok:
            raise st.refuse("a persistent id that is not a torch storage record")
        storage = self.persistent_load(pid)
        self.storages[id(storage)] = storage
        st.seal(storage)
        return storage

    # ---- calls

    def on_call(self, func: Any, args: Any) -> Any:
        st = self.state
        entry = st.external.get(id(func))
        if entry is None or entry.kind != CALL or not entry.module.startswith("torch"):
            return super().on_call(func, args)
        if not isinstance(args, tuple):
            raise PickleStreamError("REDUCE arguments are not a tuple")
        target = ":".join(entry.target)
        if target == _TENSOR_V2:
            return self._tensor(func, args, 6, 7)
        if target == _TENSOR:
            return self._tensor(func, args, 4, 4)
        if target == _PARAMETER:
            return self._parameter(args)
        raise Unsupported(entry.key)

    def _hooks_empty(self, hooks: Any) -> bool:
        return type(hooks) in (OrderedDict, dict) and not hooks

    def _tensor(self, func: Any, args: tuple[Any, ...], lo: int, hi: int) -> Any:
        st = self.state
        if not lo <= len(args) <= hi:
            raise st.refuse(f"a tensor record with {len(args)} fields")
        storage, offset, size, stride = args[:4]
        if id(storage) not in self.storages:
            raise st.refuse("a tensor whose storage is not a storage record of this file")
        if not (
            type(offset) is int
            and offset >= 0
            and type(size) is tuple
            and type(stride) is tuple
            and len(size) == len(stride) <= 64
            and all(type(d) is int and d >= 0 for d in size)
            and all(type(s) is int and s >= 0 for s in stride)
        ):
            raise st.refuse("a tensor record whose offset, sizes or strides are not plain counts")
        elements = storage._size()  # TypedStorage.size() warns about TypedStorage
        numel = 1
        last = offset
        for d, s in zip(size, stride):
            numel *= d
            last += (d - 1) * s
        if numel and last >= elements:
            raise st.refuse(f"a tensor view reaching element {last} of a storage of {elements}")
        if numel > max(elements, 1):
            raise Unsupported("a tensor larger than its storage (an expanded view)")
        if lo == 6:
            requires_grad, hooks = args[4], args[5]
            metadata = args[6] if len(args) > 6 else None
            if type(requires_grad) is not bool or not self._hooks_empty(hooks):
                raise st.refuse("a tensor record with backward hooks or a non-bool requires_grad")
            if metadata:
                raise Unsupported("tensor metadata")
            tensor = func(storage, offset, size, stride, requires_grad, OrderedDict())
        else:
            tensor = func(storage, offset, size, stride)
        self.tensors[id(tensor)] = tensor
        return tensor

    def _parameter(self, args: tuple[Any, ...]) -> Any:
        import torch

        st = self.state
        if len(args) != 3:
            raise st.refuse(f"a parameter record with {len(args)} fields")
        data, requires_grad, hooks = args
        if id(data) not in self.tensors or type(requires_grad) is not bool:
            raise st.refuse("a parameter record that does not wrap a tensor of this file")
        if not self._hooks_empty(hooks):
            raise st.refuse("a parameter record with backward hooks")
        param = torch.nn.Parameter(data, requires_grad)
        self.tensors[id(param)] = param
        return param

    # ---- mutation: torch's state dicts carry ``_metadata`` on their OrderedDict

    def on_build(self, target: Any, state: Any) -> Any:
        if type(target) is OrderedDict and id(target) not in self.state.external:
            return self._build_ordered(target, state)
        return super().on_build(target, state)

    def _build_ordered(self, target: Any, state: Any) -> Any:
        st = self.state
        self._own(target, "BUILD")
        if id(target) in st.sealed:
            raise st.refuse("the stream sets the state of an OrderedDict a second time")
        if not isinstance(state, dict) or not all(
            type(k) is str and not k.startswith("__") and not hasattr(OrderedDict, k) for k in state
        ):
            raise st.refuse("an OrderedDict state that is not a dict of plain attribute names")
        target.__dict__.update(state)
        st.sealed.add(id(target))
        return target

    dispatch = dict(RestrictedUnpickler.dispatch)  # type: ignore[misc]
    dispatch[ord("c")] = load_global
    dispatch[0x93] = load_stack_global  # STACK_GLOBAL
    dispatch[ord("Q")] = load_binpersid


def load(path: Path, where: str, map_location: Any, limits: Limits | None = None) -> Any:
    """``torch.load`` of a zip archive with :class:`TorchUnpickler` as its unpickler.
    The caller has checked the container. Raises :class:`Unsupported` (fall back),
    UnsafeModelError, PickleStreamError, or whatever torch raises reading the records."""
    import torch

    bound = limits or Limits.from_env()

    class _Bound(TorchUnpickler):
        def __init__(self, file: Any, **kwargs: Any) -> None:
            super().__init__(file, where=where, limits=bound)

    module = types.SimpleNamespace(__name__="modelstore.security.torch_load", Unpickler=_Bound)
    return torch.load(
        path, map_location=map_location, pickle_module=module, weights_only=False, mmap=True
    )
