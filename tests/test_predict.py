"""predict for torch modules: inputs, outputs, batching, modes, labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from tests import models  # noqa: E402


@pytest.fixture
def net() -> models.Net:
    return models.trained_net()


def test_inputs_numpy_list_tensor_agree(net: models.Net, x64: np.ndarray) -> None:
    """numpy, float64 numpy, lists and tensors give the same numpy output."""
    ref = ms.predict(net, x64)
    assert isinstance(ref, np.ndarray) and ref.shape == (16, 10) and ref.dtype == np.float32
    np.testing.assert_array_equal(ms.predict(net, x64.astype(np.float64)), ref)
    np.testing.assert_array_equal(ms.predict(net, x64.tolist()), ref)
    np.testing.assert_array_equal(ms.predict(net, torch.from_numpy(x64)), ref)
    with torch.no_grad():
        np.testing.assert_allclose(ref, net.eval()(torch.from_numpy(x64)).numpy(), rtol=0, atol=0)


def test_batch_size_splits(net: models.Net, x64: np.ndarray) -> None:
    """batch_size gives the same result in chunks, including a ragged last chunk."""
    np.testing.assert_allclose(
        ms.predict(net, x64, batch_size=5), ms.predict(net, x64), rtol=1e-6, atol=1e-6
    )
    with pytest.raises(ms.ArgumentError):
        ms.predict(net, x64, batch_size=0)


def test_eval_mode_and_inference_mode_restored(net: models.Net, x64: np.ndarray) -> None:
    """predict runs in eval mode (dropout off) and restores the previous training mode."""
    net.train()
    a = ms.predict(net, x64)
    b = ms.predict(net, x64)
    np.testing.assert_array_equal(a, b)  # dropout would make these differ
    assert net.training
    assert all(p.requires_grad for p in net.parameters())


def test_proba_and_labels(tmp_path: Path, net: models.Net, x64: np.ndarray) -> None:
    """proba sums to one; label maps the arg-max through the saved labels."""
    proba = ms.predict(net, x64, output="proba")
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    idx = ms.predict(net, x64, output="label")
    assert idx == [int(i) for i in proba.argmax(axis=1)]  # no labels: class indices
    names = [f"digit-{i}" for i in range(10)]
    path = tmp_path / "m.safetensors"
    ms.save(net, path, labels=names)
    loaded = ms.load(path, model=models.Net)
    assert ms.predict(loaded, x64, output="label") == [names[i] for i in idx]
    assert ms.predict(net, x64, output="label") == [names[i] for i in idx]  # the saved object too
    with pytest.raises(ms.ArgumentError, match="output"):
        ms.predict(net, x64, output="probs")


def test_predict_from_path_needs_a_runnable_model(
    tmp_path: Path, net: models.Net, x64: np.ndarray
) -> None:
    """predict(path) loads safely; a bare weights file cannot run, and says so."""
    path = tmp_path / "m.safetensors"
    ms.save(net, path)
    with pytest.raises(ms.UnsupportedModelError, match="no backend can predict"):
        ms.predict(path, x64)


def test_bfloat16_model_returns_float32(x64: np.ndarray) -> None:
    """Half-precision models take float inputs and give float32 numpy."""
    net = models.trained_net().to(torch.bfloat16)
    out = ms.predict(net, x64)
    assert out.dtype == np.float32 and out.shape == (16, 10)


def test_modes_of_submodules_put_back(net: models.Net, x64: np.ndarray) -> None:
    """A module in training mode runs in eval mode and each submodule gets its own mode back;
    one in eval mode runs as it is (a submodule left in training mode on purpose stays so)."""
    net.train()
    net.fc1.eval()
    a = ms.predict(net, x64)
    np.testing.assert_array_equal(a, ms.predict(net, x64))
    assert net.training and net.drop.training and not net.fc1.training
    net.eval()
    net.drop.train()  # e.g. Monte-Carlo dropout, asked for by the caller
    assert not np.array_equal(ms.predict(net, x64), ms.predict(net, x64))
    assert net.drop.training and not net.training


def test_structure_changes_after_a_predict_are_seen(x64: np.ndarray) -> None:
    """What predict remembers per module (its first parameter, embedding or not) follows a
    change of the module: a new first layer of another dtype, an embedding put in front."""
    net = models.trained_net().eval()
    ms.predict(net, x64)
    net.fc1 = torch.nn.Linear(64, net.fc1.out_features).to(torch.float64)
    net.fc2 = net.fc2.to(torch.float64)
    assert ms.predict(net, x64).dtype == np.float64  # inputs cast to the new first layer's dtype
    emb = torch.nn.Sequential(torch.nn.Linear(4, 4)).eval()
    ms.predict(emb, np.zeros((2, 4), np.float32))
    emb[0] = torch.nn.Embedding(10, 4)
    out = ms.predict(emb, np.array([[1, 2, 3]]))  # integer ids stay integers for the embedding
    assert out.shape == (1, 3, 4)


def test_first_parameter_is_the_one_parameters_yields() -> None:
    """The walk that finds the dtype to cast to agrees with ``next(module.parameters())`` on
    nested, shared, parameter-less and very deep trees (past 64 levels it falls back to
    ``modules()``); a module returning a parameter as it is still gives numpy out."""
    from modelstore.formats.torch.predict import _first_and_ids

    nn = torch.nn
    shared = nn.Linear(3, 3).double()
    trees = [
        nn.Sequential(nn.ReLU(), nn.Sequential(nn.Identity(), shared), nn.Linear(3, 3)),
        nn.Sequential(shared, shared),
        nn.Sequential(nn.ReLU()),
    ]
    deep: torch.nn.Module = nn.Linear(2, 2).half()
    for _ in range(100):
        deep = nn.Sequential(nn.ReLU(), deep)
    trees.append(deep)
    for tree in trees:
        want = next(tree.parameters(), None)
        assert _first_and_ids(tree)[0] is want

    class ReturnsWeight(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(2, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.w

    out = ms.predict(ReturnsWeight().eval(), np.zeros((2, 2), np.float32))
    np.testing.assert_array_equal(out, np.ones((2, 2), np.float32))
    assert ms.predict(trees[-1].eval(), np.ones((1, 2), np.float32)).dtype == np.float32


def test_the_one_batch_path_answers_as_the_general_one(net: models.Net, x64: np.ndarray) -> None:
    """``predict(model, x)`` on a module in eval mode takes a shorter path (serving calls it
    per request); its answers and refusals are those of the batched path."""
    net.eval()
    np.testing.assert_array_equal(ms.predict(net, x64), ms.predict(net, x64, batch_size=64))
    half = models.trained_net().half().eval()
    out = ms.predict(half, x64)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, ms.predict(half, x64, batch_size=64))
    for kwargs in ({}, {"batch_size": 64}):
        with pytest.raises(ms.ArgumentError, match=r"shape \(16, 3\)\) do not fit"):
            ms.predict(net, np.zeros((16, 3), np.float32), **kwargs)

    class Pair(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x

    for kwargs in ({}, {"batch_size": 64}):
        with pytest.raises(ms.UnsupportedModelError, match="got tuple"):
            ms.predict(Pair().eval(), x64, **kwargs)
