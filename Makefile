# The two commands of the README: `make run` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test venv chromium clean

# Re-install whenever pyproject.toml or the engine's C kernels (built by setup.py) change.
$(STAMP): pyproject.toml setup.py engine/_kernels.c engine/_pool.c engine/_pool.h engine/_cblas.c
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
test: $(STAMP) chromium
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

# The browser tests (tests/test_dashboard.py) drive Debian's Chromium at $(CHROMIUM), never Playwright's own
# download; installed here with apt-get when missing (root only).
CHROMIUM ?= /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || { \
	    if [ "$$(id -u)" != 0 ]; then echo "make: $(CHROMIUM) is missing, for the browser tests; this is not root, so" \
	        "install it yourself: sudo apt-get install chromium" >&2; exit 1; fi; \
	    if ! command -v apt-get >/dev/null; then echo "make: $(CHROMIUM) is missing, for the browser tests, and there" \
	        "is no apt-get here: install Chromium so that $(CHROMIUM) runs it" >&2; exit 1; fi; \
	    echo "installing chromium (apt-get) for the browser tests"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } >/tmp/fita-apt-chromium.log 2>&1 \
	        || { tail -n 20 /tmp/fita-apt-chromium.log >&2; echo "make: apt-get could not install chromium (log above)" >&2; \
	             exit 1; }; \
	    test -x $(CHROMIUM) || { echo "make: chromium was installed but $(CHROMIUM) is not there" >&2; exit 1; }; }

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
