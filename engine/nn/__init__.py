"""``engine.nn``: modules, layers, losses; ``functional``, ``init`` and ``utils`` as attributes."""
from . import functional, init  # noqa: F401
from .modules import *  # noqa: F401,F403
from .modules import Module, Sequential, ModuleList, ModuleDict, ParameterList, ParameterDict  # noqa: F401
from .modules import Identity, Linear, Bilinear, Dropout, Dropout1d, Dropout2d, Embedding, Flatten, Unflatten  # noqa: F401
from .parameter import Parameter  # noqa: F401
from . import utils  # noqa: F401
