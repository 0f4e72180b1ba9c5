# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CIFAR-10 test zip, when it sits beside the checkout: the demo scores the trained checkpoints on it.
DEMO_DATA := $(if $(wildcard ../shared/data/cifar10_test_jpeg.zip),--data ../shared/data)

.PHONY: demo test test-slow install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/squeezelab demo --output demo_report --sweep benchmarks/results/design_space_quick $(DEMO_DATA)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --durations=15 -q

# The slow tests too: every command in fresh core, [train] and [all] environments (about 15 min on 2 cores).
test-slow: $(STAMP)
	SQUEEZELAB_SLOW_TESTS=1 $(BIN)/python -m pytest -n 2 --durations=15 -q

clean:
	rm -rf $(VENV) demo_report
