# Two commands matter: `make demo` (see it work) and `make test` (prove it works).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo-output

.PHONY: test install demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The core with its test extra and the plugins: ONNX (local model backend + the demo models),
# object storage (fsspec), video (PyAV) and the Dask executor (--executor dask-local:N / dask://HOST:PORT).
$(STAMP): $(BIN)/python pyproject.toml plugins/alpolicy-onnx/pyproject.toml plugins/alpolicy-fsspec/pyproject.toml \
		plugins/alpolicy-video/pyproject.toml plugins/alpolicy-dask/pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet -e 'plugins/alpolicy-onnx[test]'
	$(BIN)/python -m pip install --quiet -e 'plugins/alpolicy-fsspec[test]'
	$(BIN)/python -m pip install --quiet -e 'plugins/alpolicy-video[test]'
	$(BIN)/python -m pip install --quiet -e 'plugins/alpolicy-dask[test]'
	touch $(STAMP)

install: $(STAMP)

# A real Label Studio server for tests/test_labelstudio.py, in its own virtualenv (about 1 GB of
# Django, pandas, boto3...) so that its pins never touch $(VENV). Installed once (stamp file).
LABEL_STUDIO_VERSION := 1.23.2
LS_VENV := .venv-labelstudio
LS_STAMP := $(LS_VENV)/.installed-$(LABEL_STUDIO_VERSION)

.PHONY: labelstudio
$(LS_STAMP):
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LS_VENV)/bin/python -m pip install --quiet 'label-studio==$(LABEL_STUDIO_VERSION)'
	touch $(LS_STAMP)

labelstudio: $(LS_STAMP)

# Ultralytics' own predictor, for benchmarks/bench_ultralytics.py only (alpolicy vs the tool a
# user would otherwise pick), in its own virtualenv: torch, ultralytics, onnx, onnxruntime. Not
# needed by `make test`; `make bench` runs that benchmark only when this environment exists.
ULTRALYTICS_VERSION := 8.4.190
ULTRALYTICS_PINS := 'ultralytics==$(ULTRALYTICS_VERSION)' 'torch==2.14.1' 'torchvision==0.29.1' \
	'onnx==1.23.2' 'onnxslim==0.1.98' 'onnxruntime==1.32.0'
UL_VENV := .venv-ultralytics
UL_STAMP := $(UL_VENV)/.installed-$(ULTRALYTICS_VERSION)

.PHONY: ultralytics
$(UL_STAMP):
	test -x $(UL_VENV)/bin/python || $(PYTHON) -m venv $(UL_VENV)
	$(UL_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(UL_VENV)/bin/python -m pip install --quiet $(ULTRALYTICS_PINS)
	touch $(UL_STAMP)

ultralytics: $(UL_STAMP)

test: install labelstudio
	$(BIN)/python -m pytest

# Synthetic footage -> the shipped demo detector -> a policy -> a labeling queue in $(DEMO)/queue;
# the same footage -> the shipped demo segmentation model -> its policy -> $(DEMO)/queue-seg;
# then the demo policy measured against the footage's ground truth (random picks, the oracle).
demo: install
	rm -rf $(DEMO)
	$(BIN)/python -m alpolicy_onnx.synthetic $(DEMO)/frames --frames 300 --seed 7
	$(BIN)/alpolicy run $(DEMO)/frames --model onnx:demo --confidence 20 \
		--policy examples/demo-policy.json --to folder:$(DEMO)/queue --journal $(DEMO)/journal.sqlite \
		--report $(DEMO)/report
	$(BIN)/alpolicy run $(DEMO)/frames --model onnx:demo-seg --confidence 20 \
		--policy examples/demo-seg-policy.json --to folder:$(DEMO)/queue-seg --journal $(DEMO)/journal-seg.sqlite \
		--report $(DEMO)/report-seg
	@echo
	@echo "How many of the detector's errors the demo policy's 30 picks (10% of the frames) hold, against"
	@echo "30 random picks and the best possible 30 (the ground truth the footage was drawn from):"
	$(BIN)/alpolicy evaluate --ground-truth $(DEMO)/frames/ground_truth.coco.json --journal $(DEMO)/journal.sqlite \
		--policy examples/demo-policy.json --budget 30 --report $(DEMO)/report
	@echo
	@echo "Results:"
	@echo "  labeling queue:     $(DEMO)/queue/images/  (what a labeler would see)"
	@echo "  segmentation queue: $(DEMO)/queue-seg/images/  (onnx:demo-seg, examples/demo-seg-policy.json; polygons in annotations.coco.json and YOLO-seg labels/; report $(DEMO)/report-seg/index.html)"
	@echo "  pre-labels:         $(DEMO)/queue/annotations.coco.json, $(DEMO)/queue/labelstudio-tasks.json"
	@echo "  every decision:     $(DEMO)/decisions/journal-run-1.jsonl"
	@echo "  run report:         $(DEMO)/report/index.html  (funnel, charts, chosen and rejected images; open in a browser)"
	@echo "  evaluation:         $(DEMO)/report/evaluation.html  (the demo policy between random picks and the oracle)"
	@echo "  try another policy: $(BIN)/alpolicy run $(DEMO)/frames --reuse-predictions --policy YOUR.json --dry-run --journal $(DEMO)/journal.sqlite"

bench: install
	$(BIN)/python benchmarks/bench_policy.py
	$(BIN)/python benchmarks/bench_remote.py
	$(BIN)/python benchmarks/bench_memory.py
	$(BIN)/python benchmarks/bench_onnx.py
	$(BIN)/python benchmarks/bench_dedupe.py
	$(BIN)/python benchmarks/bench_cluster.py
	$(BIN)/python benchmarks/bench_triage.py
	$(BIN)/python benchmarks/bench_test_speeds.py
	@if test -x $(UL_VENV)/bin/python; then $(BIN)/python benchmarks/bench_ultralytics.py --ultralytics-python $(UL_VENV)/bin/python; \
	else echo "bench_ultralytics: skipped, no $(UL_VENV) (run 'make ultralytics' to compare with Ultralytics' predictor)"; fi

clean:
	rm -rf $(VENV) $(LS_VENV) $(UL_VENV) build *.egg-info $(DEMO) .alpolicy test-artifacts
