# Everything runs inside .venv; `make install` builds it once and re-installs only when
# pyproject.toml changes (the stamp file .venv/.installed tracks that).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501

.PHONY: install dashboard test test-all chromium bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# Without a GPU, pin torch first so pip takes the CPU wheel instead of pulling multi-GB
	@# CUDA packages; with one, plain torch (the CUDA build) is what we want.
	if command -v nvidia-smi >/dev/null 2>&1; then \
		$(BIN)/python -m pip install -q torch; \
	else \
		$(BIN)/python -m pip install -q torch==2.13.0; \
	fi
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# The dashboard has no login: it listens on this machine only unless HOST= says otherwise
# (HOST=0.0.0.0 exposes it to the network; see the README for what a visitor may then load).
HOST ?= 127.0.0.1
dashboard: install
	@case "$(HOST)" in 127.0.0.1|localhost|::1) ;; \
		*) echo "WARNING: HOST=$(HOST): the dashboard is reachable from other machines and has no login;" \
			"anyone who can reach port $(PORT) may run models on this server" >&2 ;; esac
	@echo "interp dashboard: http://$(HOST):$(PORT)"
	$(BIN)/streamlit run apps/dashboard.py --server.headless true --server.address $(HOST) --server.port $(PORT) --browser.gatherUsageStats false

# ruff checks style, imports, docstrings and likely bugs as configured in pyproject.toml ([tool.ruff]);
# lint-imports checks the import layers declared in pyproject.toml ([tool.importlinter]).
test: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

test-all: install chromium
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -m "slow or not slow"

# The dashboard's browser test drives Debian's chromium + chromedriver: installed once with apt,
# skipped when both are already there (nothing is downloaded at test time).
chromium:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || \
		(apt-get update && apt-get install -y chromium chromium-driver)

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf build dist *.egg-info .pytest_cache tests/artifacts
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
