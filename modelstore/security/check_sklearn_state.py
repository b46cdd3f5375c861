"""End-of-load checks of fitted scikit-learn state that compiled code indexes with, or sizes
its output by, or loops over.

- **Neighbours**: ``_y`` holds class indices the Cython class-mode reduction counts into
  ``classes_`` without bounds checks; ``_fit_X`` is read with the width of the query.
- **Text**: ``vocabulary_`` gives the column of each term in a CSR matrix built without
  index checks; a hashing width of 0 divides by zero in C (scikit-learn builds with cdivision).
- **Encoders, projections, polynomial features**: output widths recomputed from what the file
  stores, so a stored count can never make ``transform`` write past, or allocate far beyond,
  what the model holds.
- **Clustering**: every centre (the flat ones and those in a bisecting tree) is as wide as the
  data ``predict`` validates; thread counts are bounded.
- **Transform-time solvers** (NMF, LDA, sparse coding) and loops (chi2 sampling steps):
  iteration counts bounded.

Where allow-listed reference functions may sit is checked in :mod:`.check_sklearn_places`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .check_numpy_dtype import _int
from .check_sklearn import _array, _np

if TYPE_CHECKING:
    from .pickle_load import LoadState

#: Most output columns a fitted transform may declare per sample (8 bytes each: 128 MiB/row).
MAX_WIDTH = 1 << 24
#: Most iterations a transform-time solver may be asked for (NMF, LDA, sparse coding).
MAX_ITER = 100_000
#: Most OpenMP threads a fitted estimator may ask for.
MAX_THREADS = 4096


def _labels_in(st: LoadState, y: Any, n_classes: int, what: str) -> None:
    if y.dtype.kind not in "iu" or (y.size and not (y.min() >= 0 and y.max() < n_classes)):
        raise st.refuse(f"{what} holds class indices outside its {n_classes} classes")


def check_neighbors(st: LoadState, est: Any) -> None:
    """A fitted neighbours model: its samples, tree and labels agree in count and width."""
    np = _np()
    d = est.__dict__
    if "_fit_X" not in d:
        return
    name = type(est).__name__
    n, n_features = d.get("n_samples_fit_"), d.get("n_features_in_")
    if not (_int(n) and int(n) >= 1 and _int(n_features) and int(n_features) >= 1):
        raise st.refuse(f"a {name} without its sample and feature counts")
    n, n_features = int(n), int(n_features)
    fit_x = d["_fit_X"]
    shape = getattr(fit_x, "shape", None)
    if isinstance(fit_x, np.ndarray):
        _array(st, fit_x, f"the samples of a {name}", ndim=2, contiguous=False)
    precomputed = (
        isinstance(d.get("effective_metric_"), str) and d["effective_metric_"] == "precomputed"
    )
    if not (
        isinstance(shape, tuple)
        and len(shape) == 2
        and shape[0] == n
        and (precomputed or shape[1] == n_features)
    ):
        raise st.refuse(
            f"a {name} whose samples are {shape}, not {n} rows of its {n_features} features"
        )
    tree = d.get("_tree")
    if tree is not None:
        from sklearn.neighbors import BallTree, KDTree

        if type(tree) not in (BallTree, KDTree) or np.asarray(tree.data).shape != (n, n_features):
            raise st.refuse(f"a {name} whose search tree holds other data than the model")
    y = d.get("_y")
    if y is None:
        return
    y = _array(st, y, f"the targets of a {name}", contiguous=False)
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise st.refuse(f"a {name} with {y.shape[:1]} targets for {n} samples")
    if "classes_" not in d:
        return
    classes = d["classes_"]
    if d.get("outputs_2d_"):
        if y.ndim != 2 or not isinstance(classes, list) or len(classes) != y.shape[1]:
            raise st.refuse(f"a {name} whose targets and classes disagree in outputs")
        for k, cls in enumerate(classes):
            _labels_in(st, y[:, k], len(cls), f"a {name}")
    else:
        if y.ndim != 1 or not isinstance(classes, np.ndarray) or classes.ndim != 1:
            raise st.refuse(f"a {name} whose targets and classes disagree in outputs")
        _labels_in(st, y, classes.shape[0], f"a {name}")


def check_vocabulary(st: LoadState, est: Any) -> None:
    """CountVectorizer/TfidfVectorizer/DictVectorizer: each term's column is distinct and inside
    the matrix (``len(vocabulary_)`` columns, built without index checks)."""
    vocab = est.__dict__.get("vocabulary_")
    if vocab is None:
        return
    if not isinstance(vocab, dict):
        raise st.refuse(f"a {type(est).__name__} whose vocabulary is not a dict")
    np = _np()
    values = list(vocab.values())
    if not {type(v) for v in values} <= {int, np.int64, np.int32, np.intp}:  # before converting:
        raise st.refuse(  # a value that is a shared list would be copied per term
            f"a {type(est).__name__} whose vocabulary maps terms to something other than columns"
        )
    cols = np.asarray(values)  # one pass in C: vocabularies run to millions of terms
    n = len(vocab)
    if n and (
        cols.dtype.kind not in "iu" or cols.shape != (n,) or cols.min() < 0 or cols.max() >= n
    ):
        raise st.refuse(
            f"a {type(est).__name__} whose vocabulary maps a term to a column outside its "
            f"{n} columns"
        )
    if n and np.bincount(cols, minlength=n).max() > 1:
        raise st.refuse(f"a {type(est).__name__} whose vocabulary gives two terms the same column")


def check_agglomeration(st: LoadState, est: Any) -> None:
    """FeatureAgglomeration: one cluster label per feature, each below the feature count
    (transform sizes ``bincount(labels_)`` by the largest)."""
    labels, n = est.__dict__.get("labels_"), est.__dict__.get("n_features_in_")
    if labels is None:
        return
    labels = _array(st, labels, "feature cluster labels", ndim=1, contiguous=False)
    if not _int(n) or labels.shape != (int(n),):
        raise st.refuse("a FeatureAgglomeration whose labels do not match its features")
    _labels_in(st, labels, int(n), "a FeatureAgglomeration")


def check_hashing(st: LoadState, est: Any) -> None:
    """HashingVectorizer/FeatureHasher: ``h % n_features`` in C: a width of at least 1."""
    n = est.__dict__.get("n_features")
    if not _int(n) or not 1 <= int(n) < (1 << 31):
        raise st.refuse(f"a {type(est).__name__} hashing into {str(n)[:40]} columns")


def check_one_hot(st: LoadState, est: Any) -> None:
    """OneHotEncoder: the column count of each feature is what its categories give."""
    d = est.__dict__
    if "_n_features_outs" not in d:
        return
    cats, outs = d.get("categories_"), d["_n_features_outs"]
    if (
        not isinstance(cats, list)
        or not isinstance(outs, list)
        or len(outs) != len(cats)
        or d.get("n_features_in_") != len(cats)
        or not all(_int(v) for v in outs)
    ):
        raise st.refuse("a OneHotEncoder whose output widths do not match its features")
    try:
        expected = est._compute_n_features_outs()
    except Exception:  # noqa: BLE001 - a malformed state of any kind
        expected = None
    if expected is None or [int(v) for v in outs] != [int(v) for v in expected]:
        raise st.refuse("a OneHotEncoder whose output widths do not match its categories")


def check_polynomial(st: LoadState, est: Any) -> None:
    """PolynomialFeatures: output widths recomputed from features and degrees, and bounded."""
    d = est.__dict__
    if "_n_out_full" not in d:
        return
    n, lo, hi = d.get("n_features_in_"), d.get("_min_degree"), d.get("_max_degree")
    if not (
        _int(n)
        and _int(lo)
        and _int(hi)
        and 1 <= int(n) < MAX_WIDTH
        and 0 <= int(lo) <= int(hi) <= 10_000
    ):
        raise st.refuse("a PolynomialFeatures with malformed degrees or feature count")
    full = type(est)._num_combinations(
        n_features=int(n),
        min_degree=0,
        max_degree=int(hi),
        interaction_only=bool(d.get("interaction_only")),
        include_bias=bool(d.get("include_bias")),
    )
    out = type(est)._num_combinations(
        n_features=int(n),
        min_degree=int(lo),
        max_degree=int(hi),
        interaction_only=bool(d.get("interaction_only")),
        include_bias=bool(d.get("include_bias")),
    )
    if d["_n_out_full"] != full or d.get("n_output_features_") != out or full > MAX_WIDTH:
        raise st.refuse(
            f"a PolynomialFeatures declaring {str(d['_n_out_full'])[:40]} output columns "
            f"(its degrees give {full}; at most {MAX_WIDTH})"
        )


def check_random_projection(st: LoadState, est: Any) -> None:
    """Random projections: the projection matrix is (n_components_, n_features_in_), and a
    sparse one declares no more rows than it stores entries (the output is dense)."""
    from scipy import sparse

    d = est.__dict__
    comp = d.get("components_")
    if comp is None:
        return
    k, n = d.get("n_components_"), d.get("n_features_in_")
    shape = getattr(comp, "shape", None)
    stored = comp.nnz if sparse.issparse(comp) else getattr(comp, "size", 0)
    if not (_int(k) and _int(n) and shape == (int(k), int(n)) and int(k) <= max(4 * stored, 1024)):
        raise st.refuse(
            f"a {type(est).__name__} projecting to {str(k)[:40]} columns from a "
            f"{shape} matrix storing {stored} values"
        )


def check_spline(st: LoadState, est: Any) -> None:
    """SplineTransformer: the output width is what its splines give (transform allocates it)."""
    d = est.__dict__
    splines, n = d.get("bsplines_"), d.get("n_features_in_")
    if splines is None:
        return
    shapes = (
        [getattr(getattr(b, "c", None), "shape", None) for b in splines]
        if isinstance(splines, list)
        else []
    )
    shape = (
        shapes[0] if shapes and all(type(x) is tuple and x == shapes[0] for x in shapes) else None
    )
    if not _int(n) or len(splines) != int(n) or not (isinstance(shape, tuple) and len(shape) == 2):
        raise st.refuse("a SplineTransformer whose splines do not match its features")
    n_splines = shape[1]
    expected = int(n) * int(n_splines) - int(n) * (1 - bool(d.get("include_bias")))
    if d.get("n_features_out_") != expected or expected > MAX_WIDTH:
        raise st.refuse(
            f"a SplineTransformer declaring {str(d.get('n_features_out_'))[:40]} output columns "
            f"(its splines give {expected})"
        )


def check_sketch(st: LoadState, est: Any) -> None:
    """PolynomialCountSketch: a bounded sketch width that every hash index falls inside."""
    d = est.__dict__
    k, index = d.get("n_components"), d.get("indexHash_")
    degree = d.get("degree")
    if index is None:
        return
    index = _array(st, index, "a count sketch's hash indices", ndim=2, contiguous=False)
    if not (
        _int(k)
        and 1 <= int(k) <= MAX_WIDTH
        and _int(degree)
        and 1 <= int(degree) <= 1000
        and index.shape[0] == int(degree)
        and index.dtype.kind in "iu"
        and (index.size == 0 or (index.min() >= 0 and index.max() < int(k)))
    ):
        raise st.refuse(
            f"a PolynomialCountSketch of width {str(k)[:40]} whose hashes do not fit it"
        )


#: estimator class name -> (attributes a transform loops or sizes by, their upper bound)
_BOUNDED = {
    "AdditiveChi2Sampler": (("sample_steps",), 1000),
    "NMF": (("max_iter",), MAX_ITER),
    "MiniBatchNMF": (
        ("max_iter", "_transform_max_iter", "transform_max_iter", "fresh_restarts_max_iter"),
        MAX_ITER,
    ),
    "LatentDirichletAllocation": (("max_doc_update_iter",), MAX_ITER),
    "DictionaryLearning": (("transform_max_iter",), MAX_ITER),
    "MiniBatchDictionaryLearning": (("transform_max_iter",), MAX_ITER),
    "SparseCoder": (("transform_max_iter",), MAX_ITER),
}


def check_bounded(st: LoadState, est: Any) -> None:
    """Counts a transform loops over or multiplies its output by, within sane bounds."""
    attrs, hi = _BOUNDED[type(est).__name__]
    for attr in attrs:
        value = est.__dict__.get(attr)
        if value is not None and not (_int(value) and 0 <= int(value) <= hi):
            raise st.refuse(f"a {type(est).__name__} with {attr}={str(value)[:40]} (at most {hi})")


def check_clustering(st: LoadState, est: Any) -> None:
    """k-means family: centres (flat and in a bisecting tree) as wide as the features;
    thread counts bounded."""
    np = _np()
    d = est.__dict__
    name = type(est).__name__
    threads = d.get("_n_threads")
    if threads is not None and not (_int(threads) and 1 <= int(threads) <= MAX_THREADS):
        raise st.refuse(f"a {name} asking for {str(threads)[:40]} threads")
    centers = d.get("cluster_centers_")
    if centers is None:
        return
    n_features = d.get("n_features_in_")
    centers = _array(st, centers, "cluster centres", ndim=2, contiguous=False)
    if not _int(n_features) or centers.shape[1] != int(n_features):
        raise st.refuse(f"a {name} whose centres do not match its feature count")
    n_features = int(n_features)
    mean = d.get("_X_mean")
    if mean is not None and getattr(mean, "shape", None) != (n_features,):
        raise st.refuse(f"a {name} whose data mean does not match its feature count")
    if "_bisecting_tree" not in d:
        return
    from sklearn.cluster._bisect_k_means import _BisectingTree

    seen: set[int] = set()
    todo = [d["_bisecting_tree"]]
    while todo:
        node = todo.pop()
        if type(node) is not _BisectingTree or id(node) in seen:
            raise st.refuse(f"a {name} whose cluster tree is not a tree")
        seen.add(id(node))
        nd = node.__dict__
        center = nd.get("center")
        if (
            not isinstance(center, np.ndarray)
            or center.shape != (n_features,)
            or center.dtype.kind != "f"
        ):
            raise st.refuse(f"a {name} with a cluster centre that does not match its feature count")
        left, right = nd.get("left"), nd.get("right")
        if (left is None) != (right is None):
            raise st.refuse(f"a {name} whose cluster tree has a node with one child")
        if left is not None:
            todo += [left, right]


def finals_for(obj: Any) -> list[Any]:
    """The checks of this module an estimator needs, by what it is."""
    from sklearn.cluster import FeatureAgglomeration
    from sklearn.cluster._kmeans import _BaseKMeans
    from sklearn.feature_extraction import DictVectorizer, FeatureHasher
    from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer
    from sklearn.kernel_approximation import PolynomialCountSketch
    from sklearn.neighbors._base import NeighborsBase
    from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures, SplineTransformer
    from sklearn.random_projection import BaseRandomProjection

    out = (
        [check_bounded]
        if type(obj).__name__ in _BOUNDED and type(obj).__module__.startswith("sklearn.")
        else []
    )
    table = (
        (NeighborsBase, check_neighbors),
        ((CountVectorizer, DictVectorizer), check_vocabulary),
        (FeatureAgglomeration, check_agglomeration),
        (SplineTransformer, check_spline),
        (PolynomialCountSketch, check_sketch),
        ((HashingVectorizer, FeatureHasher), check_hashing),
        (OneHotEncoder, check_one_hot),
        (PolynomialFeatures, check_polynomial),
        (BaseRandomProjection, check_random_projection),
        (_BaseKMeans, check_clustering),
    )
    return out + [check for kinds, check in table if isinstance(obj, kinds)]
