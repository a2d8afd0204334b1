"""Fita's workers: what a job is (spec, build, datasets, training loop), where its state lives
(settings, the embedded Redis, the artifact store, checkpoints, job records) and the RQ entry point.
Depends on ``engine``; never on ``api``."""
