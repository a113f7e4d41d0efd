# bark-serve: `make serve` runs the service, `make test` runs every check. Both bootstrap .venv.
#
# torch is installed first and on its own: here `torch==2.13.0` takes the CPU wheel on disk;
# a GPU host sets TORCH_SPEC (or TORCH_INDEX) to pick its CUDA build. torchaudio is never
# installed: its wheels do not load beside torch 2.13 and then break transformers' Bark import.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
STAMP := $(VENV)/.installed

.PHONY: install serve test test-fast lint typecheck demo bench gpu-check soak mutate mutate-sample mutate-results settings-table clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(PIP) install -q -e '.[dev]'
	# the original suno-ai/bark code: the ground truth of the parity tests (its deps
	# include encodec -> torchaudio, so it comes without them)
	$(PIP) install -q --no-deps bark==0.1.5
	touch $@

serve: install
	$(VENV)/bin/bark-serve

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest

# The unit tests alone (no worker processes, servers or browser): a quick check while editing.
test-fast: install
	$(PY) -m pytest -q -m "not service" tests/app tests/bark_core

demo: install
	$(VENV)/bin/bark-tts make-checkpoint artifacts/demo-checkpoint
	$(VENV)/bin/bark-tts synthesize "Hello there. This is bark-serve." \
		--model artifacts/demo-checkpoint --voice v2/en_speaker_6 -o artifacts/hello.wav

# Timings, not tests: transformers vs bark_core on the bark-small-shaped random checkpoint
# (best of two runs per mode, as benchmarks/README.md's tables), then the service at 1/4/8/16
# concurrent requests. JSON lands in benchmarks/results/ (git-ignored: the README keeps tables).
bench: install
	$(PY) -m benchmarks.pipeline_bench --repeat 2
	$(PY) -m benchmarks.service_bench --size tiny --overhead
	$(PY) -m benchmarks.service_bench --size small --levels 1,8 --seconds 2
	$(PY) -m benchmarks.service_bench --size small --levels 1,8 --seconds 2 --voice none

# On a CUDA host, at most 8 minutes: the CUDA tests, fp16 pipeline against transformers with
# and without offload, the service at 1 and 16 streams; one JSON + Markdown table named after
# the card. Needs torch's CUDA build: make install TORCH_INDEX=https://download.pytorch.org/whl/cu130
# Without a GPU it says so in one line and fails.
gpu-check: install
	$(PY) -m benchmarks.gpu_check

# Mixed load for a set time (not in CI): RSS drift of the API and workers, Redis memory growth.
soak: install
	$(PY) tests/reliability/soak.py --duration 300

# Mutation testing (not in `make test`: too slow): mutmut ([tool.mutmut] in pyproject.toml)
# over bark_core/sampling.py, stages.py, app/worker/batch.py and app/api/protocol.py, with the
# fast tests, in a copy of the tree under artifacts/ (git-ignored); MUTATE_S bounds the run and
# MUTANTS picks mutant-name globs (e.g. MUTANTS='bark_core.sampling*'; default all, ~1400).
# The kill rate is the last line; `make mutate-results` lists the survivors.
MUTATE_S ?= 1500
MUTANTS ?=
MUTATE_DIR := artifacts/mutate
mutate: install
	rm -rf $(MUTATE_DIR) && mkdir -p $(MUTATE_DIR)
	tar -c --exclude=./.venv --exclude=./.git --exclude=./artifacts --exclude='__pycache__' . | tar -x -C $(MUTATE_DIR)
	cd $(MUTATE_DIR) && OMP_NUM_THREADS=1 timeout $(MUTATE_S) $(abspath $(VENV))/bin/mutmut run --max-children 2 $(MUTANTS) \
		|| echo "mutmut stopped (timeout $(MUTATE_S) s or error): the figures below cover what ran"
	cd $(MUTATE_DIR) && $(abspath $(PY)) -m tools.mutation_summary

# After `make mutate` (its mutants and test stats in MUTATE_DIR): SAMPLE of the mutants matching
# MUTANTS not judged yet, drawn at random (tools/mutation_sample.py), within MUTATE_S; for a file
# whose mutants cannot all be judged in one run (stages.py: ~800, each reached by ~80 tests).
SAMPLE ?= 300
mutate-sample:
	cd $(MUTATE_DIR) && OMP_NUM_THREADS=1 timeout $(MUTATE_S) $(abspath $(VENV))/bin/mutmut run --max-children 2 \
		$$($(abspath $(PY)) -m tools.mutation_sample '$(or $(MUTANTS),*)' $(SAMPLE)) \
		|| echo "mutmut stopped (timeout $(MUTATE_S) s or error): the figures below cover what ran"
	cd $(MUTATE_DIR) && $(abspath $(PY)) -m tools.mutation_summary

mutate-results:
	cd $(MUTATE_DIR) && $(abspath $(VENV))/bin/mutmut results

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache artifacts
