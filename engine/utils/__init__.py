"""``engine.utils``: as ``torch.utils``; ``engine.utils.data`` holds datasets, samplers and DataLoader."""
from . import data  # noqa: F401
