"""Fita's command line (``fita``) and its Python client (``from fita import Client``)."""
from .client import AuthError, Client, Conflict, FitaError, Job, NotFound, ValidationError

__all__ = ["AuthError", "Client", "Conflict", "FitaError", "Job", "NotFound", "ValidationError"]
