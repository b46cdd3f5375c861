"""Bound the fixed-width string arrays a lookup layer's config makes Keras build.

``StringLookup``, ``IntegerLookup`` and ``TextVectorization`` turn their ``vocabulary`` into a
numpy array when Keras constructs them (``np.array(vocabulary)``), and compare their special
tokens (``[mask_token] + [oov_token] * num_oov_indices``) the same way. A numpy string array
pads every entry to the longest one, four bytes per character: one 500,000-character token and
800 short ones are half a megabyte of JSON that deflates to 4 KB, and 1.6 GB of array (red
team, pass 4). Neither array is a variable, so the stateless check build does not see it: the
bound is Keras-free, in :func:`~.kerassize.check_config`, so ``scan`` and ``load`` agree.

The charge is the padded array, ``entries x longest entry`` characters, counted in float32
elements (four bytes, as a numpy character is); it must be covered by :data:`PAD_FACTOR` times
what the file spends on those characters (all of them in a stored member, as Keras writes
archives; fewer in a deflated one: red team, pass 5), plus the weights slack. A real
vocabulary's longest token is a few times its average one (a 60,000-token vocabulary
averaging 8 characters may hold a 240-character one), so it passes whatever its size. The
same bound applies to a vocabulary asset (``assets/.../vocabulary.txt``, which Keras reads
when the config's ``vocabulary`` is null): :func:`lines_padded`, in :mod:`.kerasfile`.
:func:`made_at_init` counts what lookup layers and compile-time metrics make from one config
integer.
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Iterator
from typing import IO, Any

#: Layers whose constructor makes a numpy array of their vocabulary and special tokens.
LOOKUPS = ("StringLookup", "IntegerLookup", "TextVectorization")
#: How many times what the file spends on a vocabulary its padded array may be.
PAD_FACTOR = 32


def _leaves(value: Any) -> Iterator[Any]:
    """The scalars of a (possibly nested) JSON list; numpy pads a nested list the same way."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        else:
            yield item


def _width(value: Any) -> int:
    """Characters numpy gives the value in a string array (a number or null: its repr's)."""
    return len(value) if isinstance(value, str) else len(repr(value))


def _int(value: Any) -> int | None:
    """A non-negative integer as Keras would take it (JSON may spell 5e7 as a float; Python
    takes ``true`` as 1)."""
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and value >= 0:
        return int(value)
    return None


def padded(cls: str, cfg: dict[str, Any]) -> tuple[int, int]:
    """(padded, held): the characters of the arrays the layer builds when Keras constructs it,
    every entry padded to the longest, and the characters its config holds for them."""
    if cls not in LOOKUPS:
        return 0, 0
    vocabulary = cfg.get("vocabulary")
    entries = list(_leaves(vocabulary)) if isinstance(vocabulary, list) else []
    # the special tokens: the mask once, the OOV token num_oov_indices times, each as numpy
    # makes it (red team: a token given as a list is an array row of its own leaves)
    mask, oov = (cfg.get(k) for k in ("mask_token", "oov_token"))
    mask_leaves = [] if mask is None else list(_leaves(mask))
    oov_leaves = [] if oov is None else list(_leaves(oov))
    count = _int(cfg.get("num_oov_indices")) or 1
    widths = [_width(e) for e in (*entries, *mask_leaves, *oov_leaves)]
    longest = max(widths, default=0)
    # every entry padded to the longest of them all (an upper bound of what numpy makes)
    rows = len(entries) + max(len(mask_leaves), 1) + count * max(len(oov_leaves), 1)
    return rows * longest, sum(widths)


def lines_padded(stream: IO[bytes], chunk: int = 1 << 20) -> tuple[int, int]:
    """(padded, held) for a vocabulary asset (``assets/.../vocabulary.txt``), which Keras
    reads when the config's ``vocabulary`` is null, in text mode, split by
    ``str.splitlines`` (red team: ``\\r``, ``\\v``, ``\\u2028`` and the rest break lines too):
    its lines, each padded to the longest, and its characters. Read in chunks: one line may be
    as long as the member (a ``\\r\\n`` split between chunks counts twice: an upper bound)."""
    decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
    lines, longest, current, held = 1, 0, 0, 0
    while True:
        data = stream.read(chunk)
        text = decode(data, final=not data)
        held += len(text)
        parts = text.splitlines(keepends=True)
        for part in parts:
            line = part.splitlines()[0]
            current += len(line)
            if len(line) < len(part):  # it ends with a line break
                longest = max(longest, current)
                current, lines = 0, lines + 1
        if not data:
            break
    return lines * max(longest, current), held


#: Metrics (a compile_config's) that make a confusion matrix, and counts per threshold.
_CONFUSION = ("IoU", "MeanIoU", "OneHotIoU", "OneHotMeanIoU")
_THRESHOLDS = (
    "AUC",
    "SensitivityAtSpecificity",
    "SpecificityAtSensitivity",
    "PrecisionAtRecall",
    "RecallAtPrecision",
)


def made_at_init(cls: str, cfg: dict[str, Any]) -> int:
    """What a preprocessing layer or a metric allocates from one config integer when Keras
    constructs it (Python lists, numpy arrays, a raw ``tf.Variable``, a compile's metrics:
    no stateless build defers them), in float32 elements (red team): an IoU metric's
    ``num_classes`` squared (int64: twice), a thresholded metric's four counts per threshold, a lookup's ``num_oov_indices`` out-of-vocabulary tokens
    (a list, then an int64 array: ~16 bytes each), a text vectorizer's ``ngrams=N`` (the tuple
    ``1..N``: ~36 bytes each), and tf-idf weights padded to ``max_tokens`` (float64, float32
    and a variable: 20 bytes each)."""
    g = cfg.get
    out = 0
    if cls in _CONFUSION:  # a num_classes x num_classes matrix (red team: compile-time metrics),
        out += 2 * (_int(g("num_classes")) or 0) ** 2  # int64 in a legacy compile
    if cls in _THRESHOLDS:  # four counts per threshold and label
        out += 4 * (_int(g("num_thresholds")) or 0) * (_int(g("num_labels")) or 1)
    if cls in LOOKUPS:
        out += 4 * (_int(g("num_oov_indices")) or 0)
        if output_mode(cfg) == "tf_idf" and g("pad_to_max_tokens"):
            out += 5 * (_int(g("max_tokens")) or 0)
    if cls == "TextVectorization":
        out += 9 * (_int(g("ngrams")) or 0)
    return out


#: Output modes Keras renames before it validates them (its deprecated spellings).
_MODE_ALIASES = {"binary": "multi_hot", "tf-idf": "tf_idf"}


def output_mode(cfg: dict[str, Any]) -> Any:
    """A layer's ``output_mode`` as Keras takes it (red team: ``"tf-idf"`` is tf-idf too)."""
    mode = cfg.get("output_mode")
    return _MODE_ALIASES.get(mode, mode) if isinstance(mode, str) else mode
