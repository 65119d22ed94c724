"""vog: find the examples a model finds hard, with Variance of Gradients (VoG).

For each example and each of K training checkpoints, vog takes the gradient of a class score
with respect to the input; an example's VoG is the mean over input elements of the per-element
standard deviation of that gradient across checkpoints, normalized within its class. The engine
is Rust, running in this process; gradients come from a built-in backend (candle, ONNX Runtime)
or from your own framework through a Python backend (:mod:`vog.torch`).

Five lines::

    import vog, vog.torch
    run = vog.score("checkpoints/", x_test, y_test,
                    backend=vog.torch.Backend(make_model))
    df = run.to_pandas()                     # one row per example, VoG and the panel scores
    run.report("report.html")                # the HTML report

:func:`score` returns a :class:`Run`; errors raise :class:`VogError` with the messages of the
``vog`` command line.
"""

from ._vog import VogError, __version__
from ._backend import Backend, Model
from ._run import Run
from ._score import score

__all__ = ["Backend", "Model", "Run", "VogError", "__version__", "backends", "score"]


def backends(plugin_dirs=()):
    """The backends available by name (built in, and plugins in the default directories and
    ``plugin_dirs``), as a list of dicts with ``name``, ``version``, ``extensions``, ``devices``
    and ``source``."""
    from . import _vog

    return [
        dict(name=n, version=v, extensions=list(e), devices=list(d), source=s)
        for n, v, e, d, s in _vog.backends([str(p) for p in plugin_dirs])
    ]
