# NormCode Server: `make run` serves on http://127.0.0.1:8000 with ./data and the demo agent;
# `make test` runs the whole suite. Both create .venv on first use.

PYTHON ?= python3
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
INSTALLED := $(VENV)/.installed

.PHONY: run test venv webui

venv: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(INSTALLED)

run: venv
	@if command -v npm >/dev/null 2>&1 && $(MAKE) -n webui >/dev/null 2>&1; then \
		$(MAKE) webui || echo "make run: the web UI build failed; serving the API without it"; \
	else \
		echo "make run: skipping the web UI build (npm or the webui target is missing)"; \
	fi
	NORMCODE_DATA_DIR=./data NORMCODE_ENV=development NORMCODE_DEFAULT_AGENT=demo exec \
		$(VENV)/bin/normcode-server serve --host $(HOST) --port $(PORT)

test: venv
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The React UI, built into webui/dist (served at /). Skipped quietly where npm is missing.
webui:
	@if command -v npm >/dev/null 2>&1; then \
		cd webui && npm ci --no-audit --no-fund && npm run build; \
	else \
		echo "make webui: npm not found; skipping the web UI build"; \
	fi
