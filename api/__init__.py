"""Fita's REST API (FastAPI): ``create_app()`` in api/app.py; routes per resource in api/routes/."""
