"""A ``.keras`` load in one pass: the backend runs the gate's scan itself
(``checks_while_loading``), and the stateless size-check build runs while the HDF5 guard
child walks the weights, so ``check_load`` compares that build with the stored sizes instead
of building again. What each step refuses is unchanged (test_keras_.py, test_keras_hostile.py,
test_keras_sizes.py); these tests pin down the order and the reuse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("h5py")

import modelstore as ms  # noqa: E402
from modelstore.formats.keras import backend as keras_backend  # noqa: E402
from modelstore.formats.keras import loading  # noqa: E402
from modelstore.pipeline import gate  # noqa: E402
from modelstore.security import kerasbuild, kerasfile, kerash5, kerasload  # noqa: E402

from .test_keras_ import edit_config, mlp  # noqa: E402


def _record(monkeypatch: pytest.MonkeyPatch, events: list[str]) -> dict[str, Any]:
    """Log the guard's start and wait, scans, builds and what check_load reused."""
    reused: dict[str, Any] = {}
    start, wait, build = kerash5.start_guard, kerash5.Guard.wait, kerasbuild._build
    scan, built = keras_backend.KerasBackend._scan, kerasload._built

    def start_logged(*a: Any, **k: Any) -> Any:
        events.append("guard started")
        return start(*a, **k)

    def wait_logged(self: Any) -> None:
        events.append("guard waited")
        wait(self)

    def build_logged(*a: Any, **k: Any) -> Any:
        events.append("build")
        return build(*a, **k)

    def scan_logged(self: Any, *a: Any, **k: Any) -> Any:
        events.append("scan")
        return scan(self, *a, **k)

    def built_logged(*a: Any, **k: Any) -> Any:
        reused["declared"] = built(*a, **k)
        return reused["declared"]

    monkeypatch.setattr(kerasfile, "start_guard", start_logged)
    monkeypatch.setattr(kerash5.Guard, "wait", wait_logged)
    monkeypatch.setattr(kerasbuild, "_build", build_logged)
    monkeypatch.setattr(keras_backend.KerasBackend, "_scan", scan_logged)
    monkeypatch.setattr(kerasload, "_built", built_logged)
    return reused


def test_load_scans_once_and_builds_while_the_guard_walks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.keras"
    mlp().save(path)  # a new file version: no guard verdict remembered for it
    events: list[str] = []
    reused = _record(monkeypatch, events)
    model = ms.load(path, verify=False)
    assert model.count_params() == mlp().count_params()
    # one scan (in the backend's load, not the gate's as well), one guard child, and the one
    # stateless build between its start and the wait for its answer
    assert events[:4] == ["scan", "guard started", "build", "guard waited"], events
    assert events.count("build") == 1 and events.count("scan") == 1, events
    assert reused["declared"] is not None  # check_load compared the early build's variables
    # 64-32-10, and the dropout's seed state: every variable the build made
    assert sorted(n for _, _, n, *_ in reused["declared"]) == [2, 10, 32, 320, 2048]


def test_the_gate_leaves_the_scan_to_the_built_in_backend_only() -> None:
    builtin = keras_backend.KerasBackend()
    assert builtin.checks_while_loading and gate._builtin(builtin)

    class Plugin(keras_backend.KerasBackend):  # the same flag, not the built-in class
        def scan(self, path: Path) -> Any:
            raise AssertionError(f"scanned {path}")

    with pytest.raises(AssertionError, match="scanned"):
        gate.gate(Plugin(), Path("x.keras"), False)
    gate.gate(builtin, Path("never-read.keras"), False)  # left to its load: nothing read here


def test_the_early_build_is_used_only_for_the_same_config_and_mode() -> None:
    config = {"class_name": "Sequential", "config": {"layers": []}}
    early = loading.EarlyBuild(Path("x.keras"))
    assert kerasload._built(early, config, True) is None  # nothing built
    early.result = (config, True, [("Dense 'd'", (4, 3), 12)])
    assert kerasload._built(early, dict(config), True) == [("Dense 'd'", (4, 3), 12)]
    assert kerasload._built(early, config, False) is None  # another safe mode: built again
    assert kerasload._built(early, {**config, "config": {"layers": [1]}}, True) is None
    early.result = (config, True, TypeError("Keras could not build it"))
    with pytest.raises(TypeError, match="could not build"):  # raised where the build was
        kerasload._built(early, config, True)


def test_a_config_keras_cannot_build_is_reported_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The early build's error is raised by check_load, where building would have raised it:
    the same FormatError as a load that builds there."""
    path = tmp_path / "bad.keras"
    mlp().save(path)

    def no_units(config: dict[str, Any]) -> None:
        config["config"]["layers"][1]["config"]["units"] = "many"

    edit_config(path, no_units)
    with pytest.raises(ms.FormatError, match="could not rebuild") as early:
        ms.load(path)
    monkeypatch.setattr(keras_backend, "EarlyBuild", lambda *a: None)  # build in check_load
    with pytest.raises(ms.FormatError, match="could not rebuild") as late:
        ms.load(path)
    assert str(early.value) == str(late.value)


def _lambda_archive(path: Path, marker: Path) -> None:
    """Dense(3) then a Lambda that creates ``marker`` when the model is built (harmless)."""
    fn = eval(f"lambda v: (open({str(marker)!r}, 'w').close(), v)[1]")  # noqa: S307
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Lambda(fn)])
    model.save(path)
    marker.unlink(missing_ok=True)  # building it here ran the lambda


def _damage_weights(path: Path) -> None:
    """HDF5's signature followed by zeros in place of model.weights.h5: the guard refuses it."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    h5 = members["model.weights.h5"]
    members["model.weights.h5"] = h5[:8] + b"\0" * (len(h5) - 8)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


@pytest.mark.parametrize("damage", ["weights", "sizes"])
def test_a_trusted_lambda_waits_for_the_whole_scan(tmp_path: Path, damage: str) -> None:
    """Red team, ninth round: with trust=["keras.layers.Lambda"] the early build ran the
    Lambda's code, and only then did the scan refuse the file for what no trust list lifts
    (damaged HDF5, declared weights the file does not store). A config with any audit finding,
    trusted or not, is built only after the whole scan has passed."""
    path, marker = tmp_path / "m.keras", tmp_path / "marker"
    _lambda_archive(path, marker)
    if damage == "weights":
        _damage_weights(path)
        error: type[Exception] = ms.IntegrityError
    else:  # 1.2M weights declared at least: over what is stored plus the slack (the scan
        # refuses it from the config), under the early bound from the weights member's size

        def wide(config: dict[str, Any]) -> None:
            config["config"]["layers"][1]["config"]["units"] = 600_000

        edit_config(path, wide)
        error = ms.UnsafeModelError
    with pytest.raises(Exception):  # the naive load runs the file's code before it fails
        keras.saving.load_model(path, safe_mode=False)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(error):
        ms.load(path, trust=["keras.layers.Lambda"])
    assert not marker.exists()


def _peak_growth() -> Any:
    """Reset this process's peak RSS (VmHWM) to its RSS; the returned function gives, in MiB,
    how far the peak has risen since."""

    def status(key: str) -> int:
        lines = Path("/proc/self/status").read_text().splitlines()
        return next(int(line.split()[1]) >> 10 for line in lines if line.startswith(key + ":"))

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = status("VmRSS")
    return lambda: status("VmHWM") - base


def test_statistics_in_the_early_build_allocate_nothing(tmp_path: Path) -> None:
    """Red team, pass 2: a padded weights member raised the early bound, so the early build
    ran on four Normalizations given statistics over 2**25 inputs and allocated a gigabyte
    before the scan refused the file. The check build now declares such statistics as
    uninitialised variables of their exact shape: the early build makes nothing, and the
    refusal counts them."""
    import zipfile

    import h5py
    import numpy as np

    small = tmp_path / "small.keras"
    L = keras.layers
    norms = [L.Normalization(mean=0.0, variance=1.0, name=f"n{i}") for i in range(4)]
    keras.Sequential([keras.Input((13,)), *norms]).save(small)
    path = tmp_path / "padded.keras"
    with zipfile.ZipFile(small) as z, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in z.infolist():
            data = z.read(info.filename)
            if info.filename == "config.json":
                data = data.replace(b"13]", str(1 << 25).encode() + b"]")
            elif info.filename == "model.weights.h5":
                padded = tmp_path / "w.h5"
                padded.write_bytes(data)
                pad = np.zeros(1_400_000, np.uint8)  # compresses well (under the zip's limit)
                rng = np.random.default_rng(0)
                pad[rng.integers(0, pad.size, pad.size // 60)] = 7
                with h5py.File(padded, "a") as f:  # counts as 1.4 MB stored
                    f.create_dataset("pad", data=pad)
                data = padded.read_bytes()
            out.writestr(info.filename, data)
    assert path.stat().st_size < 50_000
    early = loading.EarlyBuild(path)
    grown = _peak_growth()
    early()
    assert grown() < 64, f"the early build grew the peak RSS by {grown()} MiB"
    assert early.result is not None
    made = [(w, shape) for w, shape, _, kind, _ in early.result[2] if kind == kerasbuild.MADE]
    assert ("Normalization 'n3', variable 'mean'", (1 << 25,)) in made
    grown = _peak_growth()
    with pytest.raises(ms.UnsafeModelError, match="268,435,456"):
        ms.load(path)
    assert grown() < 64, f"the load grew the peak RSS by {grown()} MiB"
