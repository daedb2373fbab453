# Two commands: `make demo` and `make test`. Each installs what is missing first, into a
# project-local virtual environment (.venv) so nothing is installed into, or upgraded in, the
# system's Python. PYTHON may name another interpreter (e.g. an existing virtualenv's). torch is
# pinned to the CPU build that is available locally so an install never pulls the multi-GB CUDA
# wheels by accident.
VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
PIP := $(PYTHON) -m pip
TORCH_VERSION ?= 2.13.0
# Reinstall vizkit itself whenever pyproject.toml changes: its entry points (the built-in probes and
# model kinds) are read from the installed metadata, not from the source tree.
STAMP := $(VENV)/.vizkit-installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)

.PHONY: install browser demo test test-slow figures lint bench clean

install:
	@[ -x "$(PYTHON)" ] || python3 -m venv $(VENV)
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install -q "torch==$(TORCH_VERSION)"
	@$(PYTHON) -c "import vizkit, pytest, ruff, pytorch_lightning, mlxtend, imageio_ffmpeg, skimage, jinja2" 2>/dev/null \
		&& [ -f "$(STAMP)" ] \
		|| { $(PIP) install -q -e ".[test]" && mkdir -p $(VENV) && rm -f $(VENV)/.vizkit-installed-* && touch "$(STAMP)"; }

demo: install
	$(PYTHON) -m vizkit gallery build gallery/demo.toml --out gallery/_build/demo

# Gallery pages are tested in Debian's headless Chromium; installed here where apt can (root), else
# those tests skip and say so.
browser:
	@command -v chromium >/dev/null 2>&1 \
		|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		     && timeout 600 apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1; } \
		|| echo "chromium is not installed and could not be: the browser tests will skip"

test: install browser
	$(PYTHON) -m ruff check vizkit tests examples benchmarks
	$(PYTHON) -m pytest -q -p no:cacheprovider

# Every image under docs/img, rebuilt from the recipes and benchmarks docs/img/figures.toml names,
# with docs/img/manifest.json recording what each shows (checked by tests/test_docs_figures.py).
figures: install
	OMP_NUM_THREADS=1 $(PYTHON) docs/figures.py

# Every slow science check (real training runs: about 6 minutes on this project's 2-core machines, run by CI
# after `make test`); what each measured goes to $(SCIENCE_LOG) with the date and commit: the
# committed benchmarks/test_slow.md is the log that docs' numbers cite.
SCIENCE_LOG ?= benchmarks/test_slow.md
test-slow: install
	$(PYTHON) -m pytest -q -p no:cacheprovider -m slow --durations=0 --rootdir=. --science-log=$(SCIENCE_LOG)

clean:
	rm -rf gallery/_build lightning_logs .pytest_cache
