"""Fita's command line (``fita``) and, later, its Python client."""
