"""Grad mode: whether ops record the tape. Usable as context managers and as decorators."""
from __future__ import annotations

import functools
import threading


class _State(threading.local):
    """Per thread, as in PyTorch: a server thread's no_grad must not switch off another's tape."""
    enabled = True


_state = _State()


def is_grad_enabled() -> bool:
    return _state.enabled


class _GradMode:
    """Base of no_grad / enable_grad / set_grad_enabled: sets the mode on enter, restores on exit."""

    _mode: bool

    def __enter__(self):
        self._prev = _state.enabled
        _state.enabled = self._mode

    def __exit__(self, *exc):
        _state.enabled = self._prev
        return False

    def __call__(self, fn):
        mode = self._mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    _mode = False


class enable_grad(_GradMode):
    _mode = True


class set_grad_enabled(_GradMode):
    """Sets the mode at once (as a function call) and restores it when used as a context manager."""

    def __init__(self, mode: bool):
        self._mode = bool(mode)
        self._prev = _state.enabled
        _state.enabled = self._mode

    def __enter__(self):
        pass  # the mode was already set by __init__

    def __call__(self, fn):
        _state.enabled = self._prev  # as a decorator it must not change the mode at definition time
        return super().__call__(fn)

    def __exit__(self, *exc):
        _state.enabled = self._prev
        return False


class inference_mode(no_grad):
    def __init__(self, mode: bool = True):
        self._mode = not mode
