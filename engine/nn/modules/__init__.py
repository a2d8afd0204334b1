"""The layers of engine.nn, one file per family as in PyTorch."""
from .module import Module  # noqa: F401
from .container import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential  # noqa: F401
from .linear import Bilinear, Identity, Linear  # noqa: F401
from .activation import *  # noqa: F401,F403
from .misc import Dropout, Dropout1d, Dropout2d, Embedding, Flatten, Unflatten  # noqa: F401
from .conv import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .rnn import *  # noqa: F401,F403
from .transformer import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
