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

# the web page's map library (Leaflet), from the npm registry into the package's static files: the page
# never loads anything from a CDN
LEAFLET := rsrag/service/static/vendor/leaflet/leaflet.js
$(LEAFLET): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(dir $(LEAFLET))
	cp -r web/node_modules/leaflet/dist/leaflet.js web/node_modules/leaflet/dist/leaflet.css web/node_modules/leaflet/dist/images $(dir $(LEAFLET))

setup: $(BIN)/.installed $(LEAFLET)

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
