# Two entry points for a newcomer: `make run` (set up, then the main job) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export RSRAG_DATA ?= $(abspath ../shared/data)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup run test bench

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(BIN)/.installed

# The main job: measure the default encoder (and rs-lite-mem's zero-shot) on the standard benchmarks (results/ gets the JSON),
# build a searchable UCM index under ./indexes, query it by text, caption an image, answer a
# question about an image, and ask the library about one.
run: setup
	$(BIN)/rsrag eval retrieval --dataset rsicd --split test
	$(BIN)/rsrag eval retrieval --dataset ucm --split test
	$(BIN)/rsrag eval zeroshot --dataset rsicd --split test
	$(BIN)/rsrag eval zeroshot --dataset rsicd --split test --encoder rs-lite-mem
	$(BIN)/rsrag index build ucm --name ucm
	$(BIN)/rsrag search "boats in a harbor" --index ucm --k 5
	$(BIN)/rsrag caption $(RSRAG_DATA)/ucm/images/harbor05.jpg
	$(BIN)/rsrag vqa $(RSRAG_DATA)/rsicd/images/airport_1.jpg "What kind of place is shown?"
	$(BIN)/rsrag ask "What kind of place is this?" --image $(RSRAG_DATA)/ucm/images/harbor05.jpg --index ucm

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/encode.py
