"""What a refusal should call an attack: modules and names that are code-execution, file,
process, network or import primitives (the refusal then offers no ``trust=[...]`` recipe)."""

from __future__ import annotations

#: Modules whose every object is a code-execution, file, process, network or import primitive.
#: A stream naming one of these is an attack payload, not a model: the refusal says so and
#: offers no ``trust=[...]`` recipe.
ATTACK_MODULES: frozenset[str] = frozenset(
    [
        "os",
        "posix",
        "nt",
        "subprocess",
        "ctypes",
        "_ctypes",
        "importlib",
        "pkgutil",
        "pydoc",
        "runpy",
        "marshal",
        "pickle",
        "_pickle",
        "dill",
        "cloudpickle",
        "code",
        "codeop",
        "socket",
        "shutil",
        "pty",
        "webbrowser",
        "multiprocessing",
        "threading",
        "_thread",
        "asyncio",
        "signal",
        "sys",
        "platform",
        "commands",
        "popen2",
        "timeit",
        "types",
        "operator",
        "functools",
        "inspect",
        "io",
        "_io",
        "pathlib",
        "tempfile",
        "logging",
        "http",
        "urllib",
        "requests",
        "ftplib",
        "smtplib",
        "telnetlib",
        "sqlite3",
        "zipimport",
        "gc",
        "weakref",
        "builtins",
        "__builtin__",
        "torch.serialization",
        "joblib.numpy_pickle_utils",
    ]
)

#: Builtins that are not attack primitives (plain data constructors).
_HARMLESS_BUILTINS = frozenset(
    [
        "set",
        "frozenset",
        "complex",
        "bytearray",
        "bytes",
        "slice",
        "range",
        "dict",
        "list",
        "tuple",
        "int",
        "float",
        "bool",
        "str",
        "object",
    ]
)
#: Packages and modules whose objects read or write files, download, run or load code.
_ATTACK_PACKAGES = (
    "os",
    "posix",
    "nt",
    "subprocess",
    "ctypes",
    "importlib",
    "multiprocessing",
    "socket",
    "asyncio",
    "http",
    "urllib",
    "sklearn.datasets",
    "sklearn.utils._testing",
    "numpy.ctypeslib",
    "numpy.f2py",
    "numpy.testing",
    "numpy.lib.npyio",
    "numpy.lib._npyio_impl",
    "numpy.lib.format",
    "scipy.io",
    "torch.hub",
    "torch.utils.cpp_extension",
    "torch.utils.data",
    "torch.jit",
    "torch.package",
    "joblib",
    "keras.utils",
    "tensorflow.io",
)
#: File and code loaders exported at a package's top level.
_ATTACK_NAMES = frozenset(
    f"numpy.{n}"
    for n in [
        "save",
        "savez",
        "savez_compressed",
        "savetxt",
        "load",
        "loadtxt",
        "genfromtxt",
        "fromfile",
        "fromregex",
        "memmap",
        "DataSource",
    ]
) | frozenset({"torch.load", "torch.save", "torch.from_file"})


def is_attack(module: str, name: str) -> bool:
    """Whether a global a stream names is a known code-execution / file / import primitive,
    or a dotted path through a module's attributes (the classic allow-list bypass: ``np`` in
    ``sklearn.base`` leads to ``ctypes``)."""
    if "." in name:
        return True
    if module in ("builtins", "__builtin__"):
        return name not in _HARMLESS_BUILTINS
    if module == "torch.serialization":
        return name != "_get_layout"
    if module == "joblib.numpy_pickle" and name == "NumpyArrayWrapper":
        return False  # a data marker modelstore reads itself
    if f"{module}.{name}" in _ATTACK_NAMES:
        return True
    return module in ATTACK_MODULES or any(
        module == p or module.startswith(p + ".") for p in _ATTACK_PACKAGES
    )
