# The two commands of the README: `make run` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test venv clean

# Re-install whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Fita needs Python 3.11 or newer"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(STAMP)

# The whole service on its embedded default: Redis, the API on http://$(FITA_HOST):$(FITA_PORT) and
# $(FITA_WORKERS) worker(s), in the foreground; Ctrl-C stops all of it. Honours FITA_HOST, FITA_PORT,
# FITA_DATA_DIR, FITA_WORKERS and REDIS_URL (see workers/settings.py).
run: $(STAMP)
	$(VENV)/bin/fita up

# Two test processes on two cores: each keeps BLAS (numpy's and torch's) to one thread, since
# oversubscribed BLAS threads make small matrix products 20-100x slower here. A test module runs
# whole in one process (--dist loadfile): the service tests share one live service per module.
test: $(STAMP)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
