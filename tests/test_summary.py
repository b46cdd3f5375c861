"""ms.summary: per-layer tables whose numbers agree with torchinfo and with Keras."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

import modelstore as ms  # noqa: E402
from tests import models  # noqa: E402


class ConvNet(nn.Module):
    """A small CNN with BatchNorm (buffers), a nested Sequential and a frozen-able first layer."""

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(4 * 8 * 8, hidden), nn.ReLU(), nn.Linear(hidden, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))))


def test_numbers_match_torchinfo() -> None:
    """Totals, trainable counts and every leaf's output shape equal torchinfo's; buffers stay apart."""
    torchinfo = pytest.importorskip("torchinfo")
    net = ConvNet()
    net.conv.requires_grad_(False)
    ours = ms.summary(net, input_size=(2, 1, 8, 8))
    theirs = torchinfo.summary(net, input_size=(2, 1, 8, 8), verbose=0)
    assert ours.total_params == theirs.total_params == 4330
    assert ours.trainable_params == theirs.trainable_params == 4330 - 40
    assert ours.frozen_params == 40
    bn_buffers = 4 + 4 + 1  # running_mean, running_var, num_batches_tracked
    assert ours.buffers == bn_buffers
    assert (
        ours.size_bytes == 4330 * 4 + 8 * 4 + 8
    )  # float32 params and running stats, an int64 counter
    assert "weights size: 17.0 KiB (params and buffers)" in str(ours)
    leaf_shapes = {
        row.var_name: row.output_size for row in theirs.summary_list if row.is_leaf_layer
    }
    by_type = {
        (r.type, r.output_shape and tuple(r.output_shape))
        for r in ours.layers
        if r.type != "Sequential"
    }
    for row in theirs.summary_list:
        if row.is_leaf_layer:
            assert (row.class_name, tuple(row.output_size)) in by_type, (
                row.class_name,
                row.output_size,
            )
    assert len(leaf_shapes) == 6
    conv = next(r for r in ours.layers if r.name == "conv")
    assert (conv.params, conv.trainable, conv.output_shape) == (40, 0, [2, 4, 8, 8])


def test_forward_pass_restores_modes_and_leaves_no_hooks() -> None:
    """The pass runs in eval mode; training flags and the hook lists are as they were."""
    net = ConvNet().train()
    ms.summary(net, sample_input=torch.zeros(1, 1, 8, 8))
    assert all(m.training for m in net.modules())
    assert all(not m._forward_hooks for m in net.modules())


def test_text_html_and_dict() -> None:
    """str() is a table with totals, _repr_html_ a table, to_dict() plain JSON."""
    s = ms.summary(models.BNNet(), input_size=(3, 8))
    text = str(s)
    assert "BatchNorm1d" in text and "3x4" in text and "total params: 44" in text
    assert "buffers (not params): 13" in text  # 4 + 4 + 1 persistent, + 4 non-persistent
    assert s._repr_html_().startswith("<p><b>BNNet</b>") and "<table>" in s._repr_html_()
    data = json.loads(json.dumps(s.to_dict()))
    assert (
        data["total_params"] == 44
        and data["frozen_params"] == 0
        and data["layers"][0]["name"] == "(root)"
    )
    assert data["layers"][0]["buffers"] == 4  # BNNet's own (non-persistent) buffer gets a row


def test_tied_weights_count_once() -> None:
    """A weight shared by two layers counts once, as torch's own parameters() does."""
    s = ms.summary(models.TiedLM(), sample_input=torch.zeros(2, 5, dtype=torch.long))
    assert s.total_params == sum(p.numel() for p in models.TiedLM().parameters()) == 50 * 16
    assert next(r for r in s.layers if r.name == "head").output_shape == [2, 5, 50]


def test_saved_file_builds_on_meta_with_the_recorded_signature(tmp_path: Path) -> None:
    """A saved file with model=Net builds on the meta device (no init) and uses the saved signature."""
    path = tmp_path / "net.safetensors"
    ms.save(
        models.trained_net(hidden=8), path, config={"hidden": 8}, sample_input=torch.zeros(4, 64)
    )
    models.BUILT_ON.clear()
    s = ms.summary(path, model=models.Net)
    assert models.BUILT_ON == ["meta"]
    assert s.total_params == 64 * 8 + 8 + 8 * 10 + 10 and s.input_shapes == [[1, 64]]
    assert next(r for r in s.layers if r.name == "fc2").output_shape == [1, 10]
    assert ms.summary(path, model=models.Net, input_size=(5, 64)).layers[0].output_shape == [5, 8]


def test_recorded_class_needs_trust(tmp_path: Path) -> None:
    """Without model= or trust the table comes from tensor names and names the class to pass."""
    path = tmp_path / "bn.pth"
    ms.save(models.BNNet(), path)
    plain = ms.summary(path)
    assert plain.total_params == 44 and plain.buffers == 9 and plain.trainable_params is None
    assert "model=BNNet" in str(plain) and "trust=True" in str(plain)
    trusted = ms.summary(path, trust=True, input_size=(2, 8))
    assert (
        trusted.name == "BNNet"
        and trusted.total_params == 44
        and trusted.layers[2].type == "BatchNorm1d"
    )


def test_plain_state_dict_needs_no_trust(tmp_path: Path) -> None:
    """A foreign torch.save state dict is summarised from its tensor names, nothing unpickled."""
    path = tmp_path / "w.pth"
    torch.save(ConvNet().state_dict(), path)
    s = ms.summary(path)
    assert s.total_params == 4330 and s.buffers == 9
    assert s.size_bytes == sum(
        t.numel() * t.element_size() for t in ConvNet().state_dict().values()
    )
    assert [r.name for r in s.layers] == ["conv", "bn", "head.1", "head.3"]


def test_wrong_class_or_input_is_a_clear_error(tmp_path: Path) -> None:
    """A class that does not fit the file, or an input that does not fit the model, names the fix."""
    path = tmp_path / "net.safetensors"
    ms.save(models.trained_net(hidden=8), path, config={"hidden": 8})
    with pytest.raises(ms.ArchitectureMismatchError, match="could not build BNNet.*model=BNNet"):
        ms.summary(path, model=models.BNNet)
    with pytest.raises(ms.ArchitectureMismatchError, match="does not match the stored weights"):
        ms.summary(path, model=models.BNNet())
    with pytest.raises(ms.ArgumentError, match="input of shape 1x63.*input_size"):
        ms.summary(models.Net(), input_size=(1, 63))
    with pytest.raises(ms.ArgumentError, match="not both"):
        ms.summary(models.Net(), input_size=(1, 64), sample_input=torch.zeros(1, 64))
    with pytest.raises(ms.ArgumentError, match="positive integers"):
        ms.summary(models.Net(), input_size=(1, "64"))
    with pytest.raises(ms.UnsupportedModelError, match="summary"):
        ms.summary(object())
    with pytest.raises(TypeError):
        ms.summary(models.Net(), input_shape=(1, 64))  # type: ignore[call-arg]


@pytest.mark.slow
def test_onnx_file(tmp_path: Path) -> None:
    """An exported ONNX file lists its nodes, inferred shapes and initializer counts."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = tmp_path / "net.onnx"
    ms.export_onnx(models.trained_net(hidden=8), path, sample_input=torch.zeros(2, 64))
    s = ms.summary(path)
    assert s.framework == "onnx" and s.total_params == 610 and s.trainable_params is None
    assert any(r.type == "Gemm" or r.type == "MatMul" for r in s.layers)
    assert s.layers[-1].output_shape is not None and s.layers[-1].output_shape[-1] == 10
    assert ms.summary(ms.load(path)).total_params == 610  # a loaded ONNX model: its file's table
    assert sum(r.numel for r in ms.stats(ms.load(path))) == 610


@pytest.mark.slow
def test_keras_model_and_file(tmp_path: Path) -> None:
    """Keras models and .keras files report Keras' own counts and output shapes."""
    keras = pytest.importorskip("keras")
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(10),
        ]
    )
    model.layers[0].trainable = False
    s = ms.summary(model)
    assert s.total_params == model.count_params() == 64 * 16 + 16 + 4 * 16 + 16 * 10 + 10
    assert s.trainable_params == 2 * 16 + 16 * 10 + 10
    assert [r.output_shape for r in s.layers] == [[None, 16], [None, 16], [None, 10]]
    path = tmp_path / "m.keras"
    ms.save(model, path)
    assert ms.summary(path).total_params == s.total_params
    unbuilt = keras.Sequential([keras.layers.Dense(4), keras.layers.Dense(2)])
    assert "not built" in str(ms.summary(unbuilt))
    built = ms.summary(unbuilt, input_size=(1, 8))
    assert built.total_params == 8 * 4 + 4 + 4 * 2 + 2 and built.layers[-1].output_shape == [
        None,
        2,
    ]


def test_import_stays_lean() -> None:
    """ms.summary and friends are importable names that import nothing heavy until called."""
    import subprocess

    code = (
        "import sys, modelstore as ms; ms.summary; ms.stats; ms.evaluate; ms.plot_weights; "
        "print(sorted(m for m in ('torch', 'numpy', 'matplotlib', 'onnx', 'keras') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


class DataDependent(nn.Module):
    """A forward that reads a value (.item()): no meta pass possible, so a real one runs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        return y if float(y.sum().item()) >= float("-inf") else y * 0


def test_meta_pass_with_real_fallback() -> None:
    """Shapes come from a meta pass when the forward allows it, else from a real pass on CPU."""
    assert ms.summary(DataDependent(), input_size=(2, 4)).layers[0].output_shape == [2, 4]
    s = ms.summary(ConvNet(), input_size=(3, 1, 8, 8))
    assert [r.output_shape for r in s.layers if r.name == "head"] == [[3, 10]]


class TwoInputs(nn.Module):
    """Two inputs, an LSTM (tuple outputs) and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(8, 16, batch_first=True)
        self.side = nn.Linear(4, 16)
        self.head = nn.Linear(32, 3)

    def forward(self, seq: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(seq)
        return self.head(torch.cat([out[:, -1], self.side(extra)], dim=1))


def test_several_inputs_and_tuple_outputs_match_torchinfo() -> None:
    """A list of input sizes feeds several inputs; an LSTM's tuple output shows its first tensor."""
    torchinfo = pytest.importorskip("torchinfo")
    net = TwoInputs()
    ours = ms.summary(net, input_size=[(2, 5, 8), (2, 4)])
    theirs = torchinfo.summary(net, input_size=[(2, 5, 8), (2, 4)], verbose=0)
    assert (ours.total_params, ours.trainable_params) == (
        theirs.total_params,
        theirs.trainable_params,
    )
    assert ours.input_shapes == [[2, 5, 8], [2, 4]]
    assert {r.name: r.output_shape for r in ours.layers} == {
        "rnn": [2, 5, 16],
        "side": [2, 16],
        "head": [2, 3],
    }
