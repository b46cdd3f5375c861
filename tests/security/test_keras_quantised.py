"""Red team, pass 14: a quantised Keras layer was charged at its packed kernel alone.

A ``"gptq/4/1"`` policy counted an eighth of a byte per kernel element, while Keras makes,
per unit and group of kernel rows, a float32 scale and a uint8 zero point, and a float32
group index per row (``Dense._gptq_build``; AWQ a scale per row more, int4 with a block size
likewise): with groups of one row, 44 eighths per element. A layer's ``quantization_config``
(a ``GPTQConfig``, ``AWQConfig`` or ``Int4QuantizationConfig``, which Keras prefers to the
policy) may even give a fractional group size, and Keras makes ``rows / group`` groups. A
2.7 KB ``.keras`` storing no weight made plain Keras build 189 MB (a 3 KB one, over a GiB)
and ``scan`` called it safe (``load`` refused it: its check build is Keras' own).

- **hostile**: each file is first shown to make plain Keras build far more than it stores
  (counted in a ``StatelessScope``, nothing allocated), then refused by ``scan`` and ``load``;
- **sound and tight**: for every quantising layer class and mode, the config check's charge
  (``kerasquant.least_eighths``) is at most what Keras makes, and close to it where the
  groups dominate;
- **benign**: small models quantised by Keras itself (GPTQ, AWQ, int4 in blocks) scan safe,
  load and predict as Keras does.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")
h5py = pytest.importorskip("h5py")

import modelstore as ms  # noqa: E402
from modelstore.security import kerasquant, kerassize  # noqa: E402
from tests.sampling import quick_sample  # noqa: E402

L = keras.layers
Q = keras.quantizers
P = keras.dtype_policies
MiB = 1 << 20


def _policy(cls: str, mode: str) -> dict[str, Any]:
    config = {"mode": mode, "source_name": "float32"}
    return {"module": "keras.dtype_policies", "class_name": cls, "config": config}


def _map(default: Any, entries: dict[str, Any]) -> dict[str, Any]:
    config = {"default_policy": default, "policy_map": entries}
    return {"module": "keras.dtype_policies", "class_name": "DTypePolicyMap", "config": config}


def _quant_config(cls: str, **config: Any) -> dict[str, Any]:
    if cls != "Int4QuantizationConfig":
        config = {"dataset": None, "tokenizer": None, **config}
    return {"module": "keras.quantizers", "class_name": cls, "config": config}


# -- hostile files ------------------------------------------------------------------------

#: name -> (model input, the layer, its dtype policy, its quantization_config, its build
#: config, bytes plain Keras makes at least)
HOSTILE: dict[str, tuple[Any, ...]] = {
    "gptq-group-1": (
        (1 << 20) - 1,
        lambda: L.Dense(32, name="q"),
        _policy("GPTQDTypePolicy", "gptq/4/1"),
        None,
        {"input_shape": [None, (1 << 20) - 1]},
        175 * MiB,
    ),
    "awq-group-1": (
        (1 << 20) - 1,
        lambda: L.Dense(32, name="q"),
        _policy("AWQDTypePolicy", "awq/4/1"),
        None,
        {"input_shape": [None, (1 << 20) - 1]},
        175 * MiB,
    ),
    "int4-block-1": (
        (1 << 20) - 1,
        lambda: L.Dense(8, name="q"),
        _policy("Int4DTypePolicy", "int4/1"),
        None,
        {"input_shape": [None, (1 << 20) - 1]},
        45 * MiB,
    ),
    # the config, not the policy, gives the group size, a fraction: rows / group groups
    "gptq-config-fraction": (
        4096,
        lambda: L.Dense(4, name="q"),
        _policy("GPTQDTypePolicy", "gptq/4/-1"),
        _quant_config("GPTQConfig", group_size=2**-14),
        {"input_shape": [None, 4096]},
        1 << 30,
    ),
    "gptq-bare-policy-config": (  # a QuantizedDTypePolicy names no group: the config does
        (1 << 20) - 1,
        lambda: L.Dense(32, name="q"),
        _policy("QuantizedDTypePolicy", "gptq"),
        _quant_config("GPTQConfig", group_size=1),
        {"input_shape": [None, (1 << 20) - 1]},
        175 * MiB,
    ),
    "int4-config-fraction": (
        4096,
        lambda: L.Dense(4, name="q"),
        _policy("Int4DTypePolicy", "int4/-1"),
        _quant_config("Int4QuantizationConfig", block_size=2**-14),
        {"input_shape": [None, 4096]},
        1 << 30,
    ),
    # a DTypePolicyMap: the entry Keras resolves for the layer's path (red team: charged at
    # the least entry, these scanned safe): a cheap key that can never match its path, a
    # cheap default under a key matching every path, a cheap key for another layer's path
    "map-key-never-matches": (
        4096,
        lambda: L.Dense(4, name="q"),
        _map(
            _policy("GPTQDTypePolicy", "gptq/4/-1"), {"zzz": _policy("Int4DTypePolicy", "int4/-1")}
        ),
        _quant_config("GPTQConfig", group_size=2**-14),
        {"input_shape": [None, 4096]},
        1 << 30,
    ),
    "map-catch-all": (
        4096,
        lambda: L.Dense(4, name="q"),
        _map(
            _policy("Int4DTypePolicy", "int4/-1"), {".*": _policy("GPTQDTypePolicy", "gptq/4/-1")}
        ),
        _quant_config("GPTQConfig", group_size=2**-14),
        {"input_shape": [None, 4096]},
        1 << 30,
    ),
    "map-other-paths": (
        4096,
        lambda: L.Dense(4, name="q"),
        _map(
            _policy("GPTQDTypePolicy", "gptq/4/-1"),
            {"outer/r": _policy("Int4DTypePolicy", "int4/-1"), "q2": "float16", "[^q]": "int8"},
        ),
        _quant_config("GPTQConfig", group_size=2**-14),
        {"input_shape": [None, 4096]},
        1 << 30,
    ),
    # attention quantises the EinsumDense projections it makes with its own policy
    "attention-group-1": (
        4,
        lambda: L.MultiHeadAttention(2, 64, name="q"),
        _policy("GPTQDTypePolicy", "gptq/4/1"),
        None,
        {"shapes_dict": {"query_shape": [None, 3, 1 << 16], "value_shape": [None, 3, 4]}},
        80 * MiB,
    ),
}


def _hostile(tmp_path: Path, case: str) -> tuple[Path, dict[str, Any]]:
    """A model of the case's one quantised layer, as a ``.keras`` archive whose weights
    member holds no dataset: the config of a plain model, its layer's policy, quantisation
    config and build config replaced."""
    width, factory, policy, quant, build, _ = HOSTILE[case]
    x = keras.Input((3, 4) if "attention" in case else (4,), name="x")
    layer = factory()
    y = layer(x, x) if isinstance(layer, L.MultiHeadAttention) else layer(x)
    plain = tmp_path / "plain.keras"
    keras.Model(x, y).save(plain)
    with zipfile.ZipFile(plain) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    config = json.loads(members["config.json"])
    for node in config["config"]["layers"]:
        if node["class_name"] == "InputLayer" and "attention" not in case:
            node["config"]["batch_shape"] = [None, width]
        if node["config"]["name"] == "q":
            node["config"]["dtype"] = policy
            if quant is not None:
                node["config"]["quantization_config"] = quant
            node["build_config"] = build
    members["config.json"] = json.dumps(config).encode()
    empty = io.BytesIO()
    h5py.File(empty, "w").close()
    members["model.weights.h5"] = empty.getvalue()
    path = tmp_path / f"{case}.keras"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path, config


def _keras_makes(config: dict[str, Any], *, legacy: bool = False) -> int:
    """Bytes of the variables plain Keras makes for ``config`` (nothing is allocated: a
    StatelessScope whose deferred variables are dropped)."""
    from keras.src.backend.common import global_state

    pending = list(global_state.get_global_attribute("uninitialized_variables", []) or [])
    try:
        with warnings.catch_warnings(), keras.StatelessScope(initialize_variables=False):
            warnings.simplefilter("ignore")
            if legacy:
                from keras.src.legacy.saving import saving_utils

                model = saving_utils.model_from_config(json.loads(json.dumps(config)))
            else:
                model = keras.saving.deserialize_keras_object(json.loads(json.dumps(config)))
            return sum(_bytes(w) for w in model.weights)
    finally:
        global_state.set_global_attribute("uninitialized_variables", pending)


def _bytes(w: Any) -> int:
    return int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize


@pytest.mark.parametrize("case", quick_sample(sorted(HOSTILE), every=4))
def test_a_quantised_layer_making_more_than_stored_is_refused(tmp_path: Path, case: str) -> None:
    path, config = _hostile(tmp_path, case)
    made = _keras_makes(config)
    assert made > HOSTILE[case][-1], (case, made)  # the payload: hundreds of MB from 3 KB
    assert path.stat().st_size < 8 << 10
    report = ms.scan(path)
    assert report.verdict == "unsafe" and "declare at least" in str(report), report
    with pytest.raises(ms.UnsafeModelError, match="declare at least"):
        ms.load(path)


def test_a_legacy_h5_is_sized_from_the_input_scan_follows(tmp_path: Path) -> None:
    """The same GPTQ layer in a legacy ``.h5`` (no ``build_config``: the input comes from the
    model's declared one, through the graph)."""
    _, config = _hostile(tmp_path, "gptq-group-1")
    for node in config["config"]["layers"]:
        node.pop("build_config", None)
    path = tmp_path / "hostile.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = keras.__version__
        f.attrs["backend"] = keras.backend.backend()
        f.create_group("model_weights").attrs["layer_names"] = np.array([], dtype="S1")
    assert _keras_makes(config, legacy=True) > 175 * MiB
    report = ms.scan(path)
    assert report.verdict == "unsafe" and "declare at least" in str(report), report
    with pytest.raises(ms.UnsafeModelError):
        ms.load(path)


# -- the charge against Keras' own build --------------------------------------------------

C = 48  # input features
#: name -> (layer factory taking the dtype policy and quantization config, build shape;
#: None: attention called on (query, value) of 5 x C)
LAYERS: dict[str, tuple[Any, Any]] = {
    "dense": (lambda d, q: L.Dense(8, dtype=d, quantization_config=q), (2, C)),
    "dense-odd-units": (lambda d, q: L.Dense(7, dtype=d, quantization_config=q), (2, C)),
    "dense-no-bias": (
        lambda d, q: L.Dense(8, use_bias=False, dtype=d, quantization_config=q),
        (2, 5, C),
    ),
    "dense-lora": (lambda d, q: L.Dense(8, lora_rank=2, dtype=d, quantization_config=q), (2, C)),
    "einsum-2d": (
        lambda d, q: L.EinsumDense("ab,bc->ac", 9, dtype=d, quantization_config=q),
        (2, C),
    ),
    "einsum-qkv": (
        lambda d, q: L.EinsumDense("abc,cde->abde", (5, 4, 6), dtype=d, quantization_config=q),
        (2, 5, C),
    ),
    "einsum-out": (
        lambda d, q: L.EinsumDense(
            "abcd,cde->abe", (5, C), bias_axes="e", dtype=d, quantization_config=q
        ),
        (2, 5, 4, 6),
    ),
    "mha": (lambda d, q: L.MultiHeadAttention(2, 4, dtype=d), None),
    "gqa": (lambda d, q: L.GroupQueryAttention(4, 4, 2, dtype=d), None),
    "embedding": (lambda d, q: L.Embedding(10, 7, dtype=d, quantization_config=q), (2, 5)),
    "reversible-tied": (
        lambda d, q: L.ReversibleEmbedding(10, 7, dtype=d, quantization_config=q),
        (2, 5),
    ),
    "reversible-untied": (
        lambda d, q: L.ReversibleEmbedding(
            10, 7, tie_weights=False, dtype=d, quantization_config=q
        ),
        (2, 5),
    ),
    "layer-norm": (lambda d, q: L.LayerNormalization(dtype=d), (2, C)),
}


def _gptq(**kw: Any) -> Any:
    return Q.GPTQConfig(None, None, **kw)


#: name -> (dtype policy, quantization config or None)
MODES: dict[str, tuple[Any, Any]] = {
    "gptq-4-128": (lambda: P.GPTQDTypePolicy("gptq/4/128", "float32"), None),
    "gptq-4-1": (lambda: P.GPTQDTypePolicy("gptq/4/1", "float32"), None),
    "gptq-4-5": (lambda: P.GPTQDTypePolicy("gptq/4/5", "float32"), None),
    "gptq-8-1": (lambda: P.GPTQDTypePolicy("gptq/8/1", "float32"), None),
    "gptq-2-whole": (lambda: P.GPTQDTypePolicy("gptq/2/-1", "float32"), None),
    "gptq-3-7": (lambda: P.GPTQDTypePolicy("gptq/3/7", "float32"), None),
    "gptq-bf16": (lambda: P.GPTQDTypePolicy("gptq/4/1", "bfloat16"), None),
    "gptq-config": (lambda: P.GPTQDTypePolicy("gptq/4/-1", "float32"), lambda: _gptq(group_size=3)),
    "gptq-config-fraction": (
        lambda: P.GPTQDTypePolicy("gptq/4/128", "float32"),
        lambda: _gptq(group_size=0.25, weight_bits=8),
    ),
    "gptq-bare-config": (
        lambda: P.QuantizedDTypePolicy("gptq", "float32"),
        lambda: _gptq(group_size=2),
    ),
    "awq-4-1": (lambda: P.AWQDTypePolicy("awq/4/1", "float32"), None),
    "awq-4-16": (lambda: P.AWQDTypePolicy("awq/4/16", "float32"), None),
    "awq-4-whole": (lambda: P.AWQDTypePolicy("awq/4/-1", "float32"), None),
    "awq-config": (
        lambda: P.AWQDTypePolicy("awq/4/128", "float32"),
        lambda: Q.AWQConfig(None, None, group_size=1),
    ),
    "int4": (lambda: P.QuantizedDTypePolicy("int4", "float32"), None),
    "int4-whole": (lambda: P.Int4DTypePolicy("int4/-1", "float32"), None),
    "int4-1": (lambda: P.Int4DTypePolicy("int4/1", "float32"), None),
    "int4-3": (lambda: P.Int4DTypePolicy("int4/3", "float32"), None),
    "int4-config-fraction": (
        lambda: P.Int4DTypePolicy("int4/128", "float32"),
        lambda: Q.Int4QuantizationConfig(block_size=0.5),
    ),
    "int8": (lambda: P.QuantizedDTypePolicy("int8", "float32"), None),
    "float8": (lambda: P.QuantizedFloat8DTypePolicy("float8", "float32"), None),
}
#: Where the charge is exact but for the bias (at a kernel element's width): Dense,
#: EinsumDense and embeddings in GPTQ, AWQ and int4 modes; elsewhere (attention, LoRA) the
#: groups' lower bound when they are of one or fewer rows.
EXACT = {"dense", "dense-odd-units", "dense-no-bias", "embedding", "reversible-untied"}
EXACT |= {"einsum-2d", "einsum-qkv", "einsum-out"}
SMALL_GROUPS = {"gptq-4-1", "gptq-8-1", "gptq-bf16", "gptq-config-fraction", "awq-4-1"}
SMALL_GROUPS |= {"awq-config", "int4-1", "int4-config-fraction"}


def _built(layer_case: str, mode: str) -> tuple[int, dict[str, Any]] | None:
    """(bytes Keras makes, the layer's config as a file stores it), or None where Keras
    refuses the layer in that mode (GPTQ embeddings, LoRA with GPTQ)."""
    from keras.src.backend.common import global_state

    factory, shape = LAYERS[layer_case]
    policy, quant = MODES[mode]
    pending = list(global_state.get_global_attribute("uninitialized_variables", []) or [])
    try:
        with warnings.catch_warnings(), keras.StatelessScope(initialize_variables=False):
            warnings.simplefilter("ignore")
            layer = factory(policy(), quant() if quant else None)
            if shape is None:
                wider = isinstance(layer, L.MultiHeadAttention)  # (GQA: one feature size)
                q, v = keras.Input((5, C)), keras.Input((5, C + 8 if wider else C))
                layer(q, v)
            else:
                layer.build(shape)
            made = sum(_bytes(w) for w in layer.weights)
    except (ValueError, NotImplementedError, AttributeError, TypeError):
        return None
    finally:
        global_state.set_global_attribute("uninitialized_variables", pending)
    return made, json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))


def _charged(node: dict[str, Any]) -> int:
    """Eighths of a byte the config check charges the layer."""
    return sum(kerasquant.least_eighths(c, cfg, b) for c, _, cfg, b in kerassize._nodes(node))


@pytest.mark.parametrize("mode", sorted(MODES))
def test_the_charge_is_sound_and_tight_against_keras(mode: str) -> None:
    built = 0
    for case in sorted(LAYERS):
        found = _built(case, mode)
        if found is None:
            continue
        built += 1
        made, node = found
        charged = _charged(node)
        assert charged <= 8 * made, f"{case}: {charged / 8} > {made} bytes made (a false refusal)"
        quantised = mode not in ("int8", "float8") and case != "layer-norm"
        small = mode in SMALL_GROUPS and not (case in ("mha", "gqa") and MODES[mode][1])
        if quantised and (case in EXACT or small):  # (attention takes no quantization_config)
            assert charged >= 0.8 * 8 * made, f"{case}: {charged / 8} bytes; Keras makes {made}"
    assert built >= 7, mode


@pytest.mark.parametrize(
    ("dtype", "eighths"),
    [
        ("gptq/4/1_from_float32", 4),
        ("gptq/8/128_from_float32", 8),
        ("gptq/5/1_from_float32", 1),  # Keras refuses 5 bits: the least
        ("gptq/4/0_from_float32", 1),
        ("gptq/4/x_from_float32", 1),
        ("awq/4/1_from_float32", 4),
        ("awq/8/1_from_float32", 1),
        ("int4/-1_from_float32", 4),
        ("int4/-2_from_float32", 1),
        ({"class_name": "GPTQDTypePolicy", "config": {"mode": "gptq/2/+1"}}, 8),
        ({"class_name": "QuantizedDTypePolicy", "config": {"mode": "gptq"}}, 1),  # no group
    ],
)
def test_modes_are_parsed_as_keras_parses_them(dtype: Any, eighths: int) -> None:
    assert kerasquant.width({"dtype": dtype}) == eighths


def test_a_group_keras_cannot_divide_by_gets_nothing() -> None:
    """A group size Keras would fail on (a string, NaN, a negative fraction, one that makes
    the quotient infinite) charges no groups; ``True`` is a group of one, as in Keras."""
    dense = {"units": 4, "dtype": "gptq/4/-1_from_float32"}
    shapes = {"input_shape": [None, 64]}
    least = kerasquant.least_eighths("Dense", dense, shapes)
    for group in ("1", float("nan"), -0.5, 1e-320, None):
        cfg = {**dense, "quantization_config": _quant_config("GPTQConfig", group_size=group)}
        assert kerasquant.least_eighths("Dense", cfg, shapes) <= least, group
    one = {**dense, "quantization_config": _quant_config("GPTQConfig", group_size=True)}
    assert kerasquant.least_eighths("Dense", one, shapes) > 40 * 4 * 64


# -- benign models quantised by Keras itself ------------------------------------------------


def _fixed_save(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keras 3.15 leaves a GPTQ or AWQ layer's ``kernel_zero`` out of the weights it saves
    (``save_own_variables`` takes it from ``_get_kernel_with_merged_lora``, which gives none
    for those modes), and then its own ``load_model`` refuses the file ("expected 5 variables,
    but received 4"): save it as a Keras that writes what it reads would."""
    for cls in (L.Dense, L.EinsumDense):
        original = cls._get_kernel_with_merged_lora

        def merged(self: Any, original: Any = original) -> Any:
            kernel, scale, zero = original(self)
            if self.quantization_mode in ("gptq", "awq"):
                zero = self.kernel_zero
            return kernel, scale, zero

        monkeypatch.setattr(cls, "_get_kernel_with_merged_lora", merged)


def _charged_in(path: Path) -> int:
    """Eighths of a byte the config check charges a ``.keras`` file's layers."""
    with zipfile.ZipFile(path) as zf:
        return _charged(json.loads(zf.read("config.json")))


def _small_lm() -> tuple[Any, Any, Any]:
    """Token ids -> an Embedding (before the blocks) -> a block of two Dense layers."""
    keras.utils.set_random_seed(0)
    emb = L.Embedding(50, 16, name="emb")
    block = keras.Sequential(
        [keras.Input((8, 16)), L.Dense(32, activation="relu", name="up"), L.Dense(16, name="down")],
        name="block",
    )
    x = keras.Input((8,), dtype="int32")
    return keras.Model(x, block(emb(x))), emb, block


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["gptq", "awq"])
def test_a_model_quantised_by_keras_scans_safe_and_predicts_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    model, emb, block = _small_lm()
    tokens = np.random.default_rng(0).integers(0, 50, (32, 8))
    structure = {"pre_block_layers": [emb], "sequential_blocks": [block]}
    make = Q.GPTQConfig if mode == "gptq" else Q.AWQConfig
    config = make(
        tokens,
        object(),  # (a tokenizer: the dataset is already token ids)
        num_samples=8,
        sequence_length=8,
        group_size=4,
        quantization_layer_structure=structure,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.quantize(mode, config=config)
    config.quantization_layer_structure = None  # (layers: not part of the saved config)
    kernels = [w for w in model.weights if w.path.endswith("kernel_scale")]
    assert [tuple(w.shape) for w in kernels] == [(32, 4), (16, 8)]  # 16 / 4, 32 / 4 groups
    _fixed_save(monkeypatch)
    path = tmp_path / f"{mode}.keras"
    model.save(path)
    plain = keras.saving.load_model(path)  # the file is one Keras reads back
    made = sum(_bytes(w) for w in model.weights)
    assert 0.8 * made <= _charged_in(path) / 8 <= made
    report = ms.scan(path)
    assert report.verdict == "safe", report
    got = ms.load(path)
    x = tokens[:4]
    want = model.predict_on_batch(x)
    np.testing.assert_allclose(plain.predict_on_batch(x), want)
    np.testing.assert_allclose(got.predict_on_batch(x), want)


@pytest.mark.slow  # seconds; the full suite runs it
def test_a_model_quantised_to_int4_blocks_scans_safe_and_predicts_the_same(
    tmp_path: Path,
) -> None:
    """int4 in blocks of 4 rows (a scale and a zero point per block) on a Dense and an
    Embedding: the charge is close to what Keras makes (and the file stores)."""
    x = keras.Input((6,), dtype="int32")
    y = L.Dense(24, name="d")(L.Embedding(40, 32, name="e")(x))
    model = keras.Model(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.quantize("int4", config=Q.Int4QuantizationConfig(block_size=4))
    path = tmp_path / "int4.keras"
    model.save(path)
    made = sum(_bytes(w) for w in model.weights)
    assert 0.8 * made <= _charged_in(path) / 8 <= made
    assert ms.scan(path).verdict == "safe"
    got = ms.load(path)
    ids = np.arange(12).reshape(2, 6)
    np.testing.assert_allclose(got.predict_on_batch(ids), model.predict_on_batch(ids))
