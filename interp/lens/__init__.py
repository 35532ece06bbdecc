"""Reading the residual stream as a prediction at every layer: the logit lens and the tuned lens."""

from interp.lens.logit import LensResult, logit_lens
from interp.lens.tuned import TunedLens

__all__ = [
    "LensResult",
    "TunedLens",
    "logit_lens",
]
