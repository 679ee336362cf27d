# Two commands on a fresh machine:  `make demo` (the main job on the toy world) and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU wheel of torch; on a GPU machine install your CUDA torch into the venv first (see README).
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(VENV)/bin/pip install --quiet "$(TORCH)"
	$(VENV)/bin/pip install --quiet -e '.[dev,serve,paper]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/stream-r1 demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks tools

bench: $(STAMP)
	$(PY) benchmarks/streaming.py --out docs/benchmarks

clean:
	rm -rf runs/demo .pytest_cache
