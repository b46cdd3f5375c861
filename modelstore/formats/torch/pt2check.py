"""The parity check of ``ms.export`` and what ``inspect`` reports of a ``.pt2`` program."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ExportMismatchError
from ..base import LoadRequest

if TYPE_CHECKING:
    from ...security.pt2file import Pt2Archive
    from .pt2 import ExportCheck, Pt2Backend


def _flat(value: Any) -> list[Any]:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flat(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _flat(v)]
    return []


def parity(backend: Pt2Backend, tmp: Path, module: Any, check: ExportCheck) -> dict[str, Any]:
    """Load the written archive back through modelstore's checks, run it and ``module`` on
    every sample, and raise ExportMismatchError beyond the tolerances; the measured
    differences to record."""
    import torch

    program = backend.load(tmp, LoadRequest())
    runnable = program.module()
    worst_abs, worst_rel, batches = 0.0, 0.0, []
    with torch.no_grad():
        for args in check.samples:
            batch = int(args[0].shape[0]) if args and getattr(args[0], "dim", lambda: 0)() else 1
            want = _flat(module(*args))
            try:
                got = _flat(runnable(*args))
            except Exception as e:  # a guard of the program, or a kernel, refused the batch
                first = (str(e).splitlines() or [type(e).__name__])[0][:300]
                raise ExportMismatchError(
                    f"the exported program fails on a batch of {batch} where the module runs "
                    f"({type(e).__name__}: {first}); pass dynamic_batch=False to fix the batch "
                    f"size, or check=False"
                ) from None
            batches.append(batch)
            if len(want) != len(got):
                raise ExportMismatchError(
                    f"{tmp.name}: the exported program returns {len(got)} tensors, the module "
                    f"{len(want)} (batch of {batch})"
                )
            for w, g in zip(want, got):
                if w.shape != g.shape:
                    raise ExportMismatchError(
                        f"the exported program's output has shape {tuple(g.shape)}, the "
                        f"module's {tuple(w.shape)} (batch of {batch})"
                    )
                if not w.is_floating_point():
                    if not torch.equal(w, g):
                        raise ExportMismatchError(
                            f"the exported program's integer outputs differ from the module's "
                            f"(batch of {batch})"
                        )
                    continue
                w64, g64 = w.double(), g.double()
                diff = (w64 - g64).abs()
                a = float(diff.max()) if diff.numel() else 0.0
                r = float((diff / w64.abs().clamp_min(1e-12)).max()) if diff.numel() else 0.0
                worst_abs, worst_rel = max(worst_abs, a), max(worst_rel, r)
                if not torch.allclose(g64, w64, rtol=check.rtol, atol=check.atol):
                    raise ExportMismatchError(
                        f"the exported program differs from the module by up to {a:.3g} "
                        f"(relative {r:.3g}) on a batch of {batch}, beyond rtol={check.rtol}, "
                        f"atol={check.atol}; pass larger tolerances if that is expected, or "
                        f"check=False"
                    )
    return {
        "rtol": check.rtol,
        "atol": check.atol,
        "max_abs_diff": worst_abs,
        "max_rel_diff": worst_rel,
        "batches": batches,
    }


_SYMBOL = re.compile(r"Symbol\('([A-Za-z_][A-Za-z0-9_]*)'")


def _dim(d: Any) -> Any:
    if isinstance(d, dict) and isinstance(d.get("as_int"), int):
        return d["as_int"]
    expr = (d.get("as_expr") or {}).get("expr_str") if isinstance(d, dict) else None
    m = _SYMBOL.match(expr) if isinstance(expr, str) else None
    return m.group(1) if m else (expr if isinstance(expr, str) else None)


def _dtype(code: Any) -> str:
    from ...security.pt2file import _DTYPES

    return _DTYPES.get(code, f"dtype {code}") if isinstance(code, int) else "unknown"


def _tensor(name: str, values: dict[str, Any]) -> dict[str, Any]:
    found = values.get(name)
    meta: dict[str, Any] = found if isinstance(found, dict) else {}
    return {
        "name": name,
        "shape": [_dim(d) for d in meta.get("sizes") or []],
        "dtype": _dtype(meta.get("dtype")),
    }


def describe_archive(archive: Pt2Archive) -> dict[str, Any]:
    """Operators, inputs, outputs and versions of the archive's programs (``model`` first)."""
    out: dict[str, Any] = {"programs": sorted(archive.programs)}
    program = archive.programs.get("model") or next(iter(archive.programs.values()))
    gm = program.get("graph_module") or {}
    graph = gm.get("graph") or {}
    found = graph.get("tensor_values")
    values: dict[str, Any] = found if isinstance(found, dict) else {}
    sig = gm.get("signature") or {}
    inputs, outputs = [], []
    for spec in sig.get("input_specs") or []:
        user = spec.get("user_input") if isinstance(spec, dict) else None
        arg = (user or {}).get("arg") or {}
        if isinstance(arg.get("as_tensor"), dict):
            inputs.append(_tensor(str(arg["as_tensor"].get("name")), values))
    for spec in sig.get("output_specs") or []:
        user = spec.get("user_output") if isinstance(spec, dict) else None
        arg = (user or {}).get("arg") or {}
        if isinstance(arg.get("as_tensor"), dict):
            outputs.append(_tensor(str(arg["as_tensor"].get("name")), values))
    out.update(
        inputs=inputs,
        outputs=outputs,
        operators=dict(archive.graph.ops.most_common()),
        opset_version=program.get("opset_version"),
        torch_version=program.get("torch_version"),
        dynamic_dims={str(k): v for k, v in (program.get("range_constraints") or {}).items()},
        weights=len(archive.weights),
        constants=len(archive.constants),
    )
    return out


__all__ = ["describe_archive", "parity"]


def runner(program: Any) -> Any:
    """A module that runs ``program`` with each input cast to the dtype the program was
    exported with (predict's own casting follows a module's first parameter, which an
    exported program's inputs need not share). It holds no parameters of its own."""
    import torch

    dtypes = []
    user = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            val = node.meta.get("val")
            dtypes.append(getattr(val, "dtype", None))
    graph_module = program.module()

    class ExportedRunner(torch.nn.Module):
        def forward(self, *args: Any) -> Any:
            cast = [
                a.to(d) if d is not None and isinstance(a, torch.Tensor) and a.dtype != d else a
                for a, d in zip(args, dtypes)
            ]
            return graph_module(*cast, *args[len(dtypes) :])

    out = ExportedRunner()
    out.training = False  # the graph was fixed at export time; eval() of it raises
    return out
