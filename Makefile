# fcn-repro: every target sets up what it needs (a virtual environment with pinned dependencies).
#
# Reproductions are chains of file targets: an interrupted pipeline resumes where it stopped
# (training itself resumes from its newest snapshot) and a finished stage is not redone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
FCN    := $(VENV)/bin/fcn
CONVERT := $(VENV)/bin/convert-caffe
STAMP  := $(VENV)/.installed

DATA   ?= data
RUNS   ?= runs
DEVICE ?= cuda
RESULTS ?= results
TRAIN_FLAGS ?=
EVAL_FLAGS  ?=
FETCH_FLAGS ?=
# GPUS=0,1,... (with make -j N): every train and eval job takes a free GPU of the list for as long as
# it runs (reproduce/pipeline/gpu_slot.py: one flock per GPU, CUDA_VISIBLE_DEVICES set; a dead job frees its
# GPU). Empty: jobs see every GPU, as before.
GPUS   ?=
GPU_SLOT = $(if $(strip $(GPUS)),$(PY) -m reproduce.pipeline.gpu_slot --gpus $(GPUS) --lock-dir $(RUNS)/.gpu-slots --,)
# Every fetch, convert, train and eval recipe runs through this: it records the stage's wall time,
# peak RSS and disk in a stage-*.json beside its outputs (reproduce/pipeline/stage_record.py).
# exec: the wrapper replaces the recipe's shell, so that make waits on it and a SIGTERM or Ctrl-C
# does not end the shell (dash does not exec a lone command) while fcn train is still stopping.
STAGE = exec $(PY) -m reproduce.pipeline.stage_record

# Downloads, converted weights and trained stages are intermediate files of the chains below:
# never delete them (they cost hours to remake).
.SECONDARY:

.PHONY: help venv test test-gpu test-export-opencv bench bench-gpu clean-venv \
        reproduce-voc reproduce-voc-released reproduce-nyud reproduce-siftflow reproduce-context \
        reproduce-alexnet reproduce-googlenet reproduce-all reproduce-smoke reproduce-voc-dryrun

help:
	@echo "make reproduce-voc           VGG16 -> FCN-32s -> 16s -> 8s (+ 8s at-once) on VOC, results/voc.md (CUDA GPU, days)"
	@echo "make reproduce-voc-released  convert the released FCN caffemodels and score them on seg11valid (hours)"
	@echo "make reproduce-nyud | reproduce-siftflow | reproduce-context | reproduce-alexnet"
	@echo "make reproduce-googlenet     FCN-GoogLeNet (the paper's Table 1 net, our construction) on VOC, results/googlenet.md"
	@echo "make -j N reproduce-all GPUS=0,1,..  every table, independent stages in parallel, one GPU each (fcn plan all --gpus N)"
	@echo "make reproduce-smoke         the whole pipeline on the shipped samples, CPU, a few minutes"
	@echo "make reproduce-voc-dryrun    make reproduce-voc itself at full size, 2 iterations per stage, killed and rerun (CPU)"
	@echo "make test                    create .venv, install pinned dependencies, run the test suite (no GPU needed)"
	@echo "make test-gpu                the CUDA tests only (pytest -m cuda; fails on a machine without CUDA)"
	@echo "make bench                   speed and memory benchmarks -> results/bench/"
	@echo "make bench-gpu               voc-fcn8s on the GPU -> results/bench/gpu.{json,md} (CUDA)"
	@echo "make oracle                  regenerate the Caffe golden fixtures (real Caffe in a Debian chroot; root)"
	@echo "make test-oracle             compare against live Caffe at full width on 500x500 (root)"
	@echo "make test-export-oracle      fcn export caffe's files run in real Caffe, scores within 1e-5 (root)"
	@echo "make test-export-opencv      fcn export caffe's files in OpenCV dnn, same argmax (installs OpenCV 4)"
	@echo "variables: DATA=$(DATA) RUNS=$(RUNS) RESULTS=$(RESULTS) DEVICE=$(DEVICE) FETCH_FLAGS=$(FETCH_FLAGS)"

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade -c constraints.txt setuptools
	$(PIP) install -q -c constraints.txt -e '.[test]'
	touch $@

test: $(STAMP)
	$(PY) -m pytest -q

# The GPU path (tests marked cuda, tests/test_cuda.py): the point is to prove it, so a machine
# without CUDA is an error here (exit 3), not a run of skips. On a CUDA machine install the CUDA
# wheel of torch into .venv first (README); where the pinned wheel cannot be installed (no network),
# tools/gpu_check.sh runs these tests and bench-gpu with a Python that already holds a CUDA torch.
test-gpu: $(STAMP)
	FCN_REQUIRE_CUDA=1 $(PY) -m pytest -q -m cuda

clean-venv:
	rm -rf $(VENV)

# `fcn export caffe` output read by OpenCV's dnn module (an optional, test-only dependency that make
# test does not install; without it tests/test_export_opencv.py is skipped with the reason).
test-export-opencv: $(STAMP)
	$(PIP) install -q -c constraints.txt 'opencv-python-headless<5'
	$(PY) -m pytest -q tests/test_export_opencv.py

# ---------------------------------------------------------------------------------------------
# Data and weights: fetched (checksummed, resumable) into $(DATA), checked (every image and label
# decoded: fcn data check --deep), marked done.
# ---------------------------------------------------------------------------------------------
$(DATA)/.fetched-%: | $(STAMP)
	$(STAGE) $(DATA)/stage-fetch-$*.json --stage "fetch $*" --disk $(DATA)/$* -- \
		$(FCN) data fetch $* --data-root $(DATA) $(FETCH_FLAGS)
	$(FCN) data check $* --data-root $(DATA) --deep
	@touch $@

$(DATA)/weights/%.caffemodel: | $(STAMP)
	$(STAGE) $(DATA)/stage-fetch-$(WEIGHT_NAME_$*).json --stage "fetch $(WEIGHT_NAME_$*)" --disk $@ -- \
		$(FCN) data fetch $(WEIGHT_NAME_$*) --data-root $(DATA) $(FETCH_FLAGS)

WEIGHT_NAME_VGG_ILSVRC_16_layers := vgg16
WEIGHT_NAME_bvlc_reference_caffenet := caffenet
WEIGHT_NAME_bvlc_googlenet := googlenet

# ILSVRC classifiers converted with the reference's surgery (fc6/fc7 to convolutions, fc8 dropped).
# --force: make remakes a converted file only when it is older than its caffemodel.
$(RUNS)/init/%-from-vgg16.pt: $(DATA)/weights/VGG_ILSVRC_16_layers.caffemodel
	@mkdir -p $(@D)
	$(STAGE) $(@D)/stage-convert-$*-from-vgg16.json --stage "convert $* from vgg16" --disk $@ -- \
		$(CONVERT) $< $@ --force --net $* --from vgg16 $(CONVERT_FLAGS)

$(RUNS)/init/%-from-alexnet.pt: $(DATA)/weights/bvlc_reference_caffenet.caffemodel
	@mkdir -p $(@D)
	$(STAGE) $(@D)/stage-convert-$*-from-alexnet.json --stage "convert $* from alexnet" --disk $@ -- \
		$(CONVERT) $< $@ --force --net $* --from alexnet $(CONVERT_FLAGS)

# BVLC GoogLeNet: trunk by layer name, its three classifiers dropped.
$(RUNS)/init/%-from-googlenet.pt: $(DATA)/weights/bvlc_googlenet.caffemodel
	@mkdir -p $(@D)
	$(STAGE) $(@D)/stage-convert-$*-from-googlenet.json --stage "convert $* from googlenet" --disk $@ -- \
		$(CONVERT) $< $@ --force --net $* --from googlenet $(CONVERT_FLAGS)

# ---------------------------------------------------------------------------------------------
# Training stages: $(RUNS)/<experiment>/final.pt, each from what the reference's solve.py loads.
# ---------------------------------------------------------------------------------------------
define train_from  # $(1) experiment, $(2) init file(s), $(3) data marker
$(RUNS)/$(1)/final.pt: $(2) $(3)
	$(STAGE) $(RUNS)/$(1)/stage-train.json --stage "train $(1)" --disk $(RUNS)/$(1) -- \
		$$(GPU_SLOT) $(FCN) train $(1) $(foreach f,$(2),--init $(f)) --data-root $(DATA) --device $(DEVICE) --out $(RUNS)/$(1) $(TRAIN_FLAGS) $(TRAIN_FLAGS_$(1))
endef

VOC_DATA := $(DATA)/.fetched-sbd $(DATA)/.fetched-voc2011
NYUD_DATA := $(DATA)/.fetched-nyud
SIFTFLOW_DATA := $(DATA)/.fetched-siftflow
CONTEXT_DATA := $(DATA)/.fetched-voc2010 $(DATA)/.fetched-pascal-context

$(eval $(call train_from,voc-fcn32s,$(RUNS)/init/voc-fcn32s-from-vgg16.pt,$(VOC_DATA)))
$(eval $(call train_from,voc-fcn16s,$(RUNS)/voc-fcn32s/final.pt,$(VOC_DATA)))
$(eval $(call train_from,voc-fcn8s,$(RUNS)/voc-fcn16s/final.pt,$(VOC_DATA)))
$(eval $(call train_from,voc-fcn8s-atonce,$(RUNS)/init/voc-fcn8s-atonce-from-vgg16.pt,$(VOC_DATA)))
$(eval $(call train_from,voc-fcn-alexnet,$(RUNS)/init/voc-fcn-alexnet-from-alexnet.pt,$(VOC_DATA)))
$(eval $(call train_from,voc-fcn-googlenet,$(RUNS)/init/voc-fcn-googlenet-from-googlenet.pt,$(VOC_DATA)))
$(eval $(call train_from,nyud-fcn32s-color,$(RUNS)/init/nyud-fcn32s-color-from-vgg16.pt,$(NYUD_DATA)))
$(eval $(call train_from,nyud-fcn32s-hha,$(RUNS)/init/nyud-fcn32s-hha-from-vgg16.pt,$(NYUD_DATA)))
$(eval $(call train_from,nyud-fcn32s-color-d,$(RUNS)/init/nyud-fcn32s-color-d-from-vgg16.pt,$(NYUD_DATA)))
$(eval $(call train_from,nyud-fcn32s-color-hha,$(RUNS)/nyud-fcn32s-color/final.pt $(RUNS)/nyud-fcn32s-hha/final.pt,$(NYUD_DATA)))
$(eval $(call train_from,nyud-fcn16s-color-hha,$(RUNS)/nyud-fcn32s-color-hha/final.pt,$(NYUD_DATA)))
$(eval $(call train_from,siftflow-fcn32s,$(RUNS)/init/siftflow-fcn32s-from-vgg16.pt,$(SIFTFLOW_DATA)))
$(eval $(call train_from,siftflow-fcn16s,$(RUNS)/siftflow-fcn32s/final.pt,$(SIFTFLOW_DATA)))
$(eval $(call train_from,siftflow-fcn8s,$(RUNS)/siftflow-fcn16s/final.pt,$(SIFTFLOW_DATA)))
$(eval $(call train_from,pascalcontext-fcn32s,$(RUNS)/init/pascalcontext-fcn32s-from-vgg16.pt,$(CONTEXT_DATA)))
$(eval $(call train_from,pascalcontext-fcn16s,$(RUNS)/pascalcontext-fcn32s/final.pt,$(CONTEXT_DATA)))
$(eval $(call train_from,pascalcontext-fcn8s,$(RUNS)/pascalcontext-fcn16s/final.pt,$(CONTEXT_DATA)))

# Evaluation on the experiment's val/test split: $(RUNS)/eval/<experiment>/metrics.json
$(RUNS)/eval/%/metrics.json: $(RUNS)/%/final.pt
	@mkdir -p $(@D)
	$(STAGE) $(@D)/stage-eval.json --stage "eval $*" --disk $(@D) -- \
		$(GPU_SLOT) $(FCN) eval $* --weights $< --data-root $(DATA) --device $(DEVICE) --out $@ $(EVAL_FLAGS)

runs_of = $(foreach e,$(1),$(RUNS)/eval/$(e)/metrics.json)

VOC_RUNS := voc-fcn32s voc-fcn16s voc-fcn8s voc-fcn8s-atonce
NYUD_RUNS := nyud-fcn32s-color nyud-fcn32s-hha nyud-fcn32s-color-d nyud-fcn32s-color-hha nyud-fcn16s-color-hha
SIFTFLOW_RUNS := siftflow-fcn32s siftflow-fcn16s siftflow-fcn8s
CONTEXT_RUNS := pascalcontext-fcn32s pascalcontext-fcn16s pascalcontext-fcn8s

# Tables: the paper's numbers beside ours, per table, from every metrics file under $(RUNS).
TABLES ?= results/tables
define tables_for  # $(1) results/<name>.md, $(2) metrics files
$(1): $(2)
	$(FCN) tables --runs $(RUNS)/eval --out $(TABLES)
	@mkdir -p $$(@D)
	cp $(TABLES)/index.md $(1)
endef

$(eval $(call tables_for,$(RESULTS)/voc.md,$(call runs_of,$(VOC_RUNS))))
$(eval $(call tables_for,$(RESULTS)/nyud.md,$(call runs_of,$(NYUD_RUNS))))
$(eval $(call tables_for,$(RESULTS)/siftflow.md,$(call runs_of,$(SIFTFLOW_RUNS))))
$(eval $(call tables_for,$(RESULTS)/context.md,$(call runs_of,$(CONTEXT_RUNS))))
$(eval $(call tables_for,$(RESULTS)/alexnet.md,$(call runs_of,voc-fcn-alexnet)))
$(eval $(call tables_for,$(RESULTS)/googlenet.md,$(call runs_of,voc-fcn-googlenet)))

# Every reproduce-* target checks the device first (`fcn check-device`), then makes its files in a
# sub-make: on a machine without CUDA, DEVICE=cuda stops before gigabytes are fetched, saying how long
# the CPU would take, that DEVICE=cpu forces it and that `make reproduce-smoke` tries the pipeline.
define reproduce_target  # $(1) target, $(2) the files it makes, $(3) how long it would take on the CPU
$(1): $(STAMP)
	$(FCN) check-device --device $(DEVICE) --target $(1) --cpu-time "$(3)"
	$$(MAKE) --no-print-directory $(2)
endef

$(eval $(call reproduce_target,reproduce-voc,$(RESULTS)/voc.md,weeks))
$(eval $(call reproduce_target,reproduce-nyud,$(RESULTS)/nyud.md,weeks))
$(eval $(call reproduce_target,reproduce-siftflow,$(RESULTS)/siftflow.md,days))
$(eval $(call reproduce_target,reproduce-context,$(RESULTS)/context.md,weeks))
$(eval $(call reproduce_target,reproduce-alexnet,$(RESULTS)/alexnet.md,days))
$(eval $(call reproduce_target,reproduce-googlenet,$(RESULTS)/googlenet.md,days))

# Every table: `make -j N reproduce-all GPUS=0,1,...` trains and scores independent stages at the same
# time, one per GPU, in the order make's dependency graph allows (32s -> 16s -> 8s; `fcn plan all
# --gpus N` shows the order and the wall time); rerun after an interruption, it resumes as the
# single-table targets do. The tables are written one after the other once every score is in.
ALL_RUNS := $(VOC_RUNS) $(NYUD_RUNS) $(SIFTFLOW_RUNS) $(CONTEXT_RUNS) voc-fcn-alexnet voc-fcn-googlenet
ALL_TABLES := $(foreach t,voc nyud siftflow context alexnet googlenet,$(RESULTS)/$(t).md)

reproduce-all: $(STAMP)
	$(FCN) check-device --device $(DEVICE) --target reproduce-all --cpu-time "months"
	$(MAKE) --no-print-directory $(call runs_of,$(ALL_RUNS))
	$(MAKE) --no-print-directory -j1 $(ALL_TABLES)

# The quick path: the released FCN caffemodels, converted and scored on seg11valid (no training).
RELEASED := voc-fcn32s voc-fcn16s voc-fcn8s voc-fcn8s-atonce voc-fcn-alexnet
$(RUNS)/released/%/metrics.json: $(VOC_DATA) | $(STAMP)
	$(FCN) data fetch $* --data-root $(DATA) $(FETCH_FLAGS)
	@mkdir -p $(@D)
	$(STAGE) $(@D)/stage-eval.json --stage "eval released $*" --disk $(@D) -- \
		$(FCN) eval $* --weights $(DATA)/weights/$(RELEASED_FILE_$*) --data-root $(DATA) --device $(DEVICE) --out $@ $(EVAL_FLAGS)

RELEASED_FILE_voc-fcn32s := fcn32s-heavy-pascal.caffemodel
RELEASED_FILE_voc-fcn16s := fcn16s-heavy-pascal.caffemodel
RELEASED_FILE_voc-fcn8s := fcn8s-heavy-pascal.caffemodel
RELEASED_FILE_voc-fcn8s-atonce := fcn8s-atonce-pascal.caffemodel
RELEASED_FILE_voc-fcn-alexnet := fcn-alexnet-pascal.caffemodel

$(RESULTS)/voc-released.md: $(foreach e,$(RELEASED),$(RUNS)/released/$(e)/metrics.json)
	$(FCN) tables --runs $(RUNS)/released --out $(RESULTS)/tables-released
	cp $(RESULTS)/tables-released/index.md $@

$(eval $(call reproduce_target,reproduce-voc-released,$(RESULTS)/voc-released.md,a day or more))

# ---------------------------------------------------------------------------------------------
# The smoke run: the same stages on the shipped samples, reduced width, CPU, a few minutes.
# ---------------------------------------------------------------------------------------------
SMOKE := runs/smoke
SMOKE_WIDTH := 0.0625
SMOKE_LR ?= 2e-8
SMOKE_MOMENTUM ?= 0.9
SMOKE_ITERS ?= 200
SMOKE_FINE_ITERS ?= 100
# Everything the smoke run writes stays under $(SMOKE) (ignored by git): results/smoke-example/ is
# one labelled run kept for reference, never rewritten by make.
SMOKE_TABLES := $(SMOKE)/tables
SMOKE_CAVEAT := smoke run: nets at $(SMOKE_WIDTH) of full width, trained on 4 sample images and scored on 3, a check of the pipeline, not a reproduction
# Only the conversion is told the width: every later stage reads it from the weights file's record.
SMOKE_FLAGS := DATA=$(SMOKE)/data RUNS=$(SMOKE) DEVICE=cpu TABLES=$(SMOKE_TABLES) \
	CONVERT_FLAGS="--width $(SMOKE_WIDTH)" \
	TRAIN_FLAGS="--no-progress --base-lr $(SMOKE_LR) --momentum $(SMOKE_MOMENTUM) --max-iter $(SMOKE_ITERS) --test-interval $(SMOKE_ITERS)" \
	TRAIN_FLAGS_voc-fcn16s="--max-iter $(SMOKE_FINE_ITERS) --test-interval $(SMOKE_FINE_ITERS)" \
	TRAIN_FLAGS_voc-fcn8s="--max-iter $(SMOKE_FINE_ITERS) --test-interval $(SMOKE_FINE_ITERS)"

reproduce-smoke: $(STAMP)
	rm -rf $(SMOKE)
	$(FCN) smoke data $(SMOKE)/data
	$(FCN) smoke vgg16 $(SMOKE)/data/weights/VGG_ILSVRC_16_layers.caffemodel --width $(SMOKE_WIDTH)
	touch $(SMOKE)/data/.fetched-sbd $(SMOKE)/data/.fetched-voc2011
	$(MAKE) --no-print-directory $(SMOKE_FLAGS) $(foreach e,voc-fcn32s voc-fcn16s voc-fcn8s,$(SMOKE)/eval/$(e)/metrics.json)
	$(FCN) tables --runs $(SMOKE)/eval --out $(SMOKE_TABLES) --caveat "$(SMOKE_CAVEAT)"
	$(PY) -m reproduce.reporting.smoke_check $(SMOKE) $(SMOKE_TABLES)

# ---------------------------------------------------------------------------------------------
# The dry run: `make reproduce-voc` itself at full size (full-width nets, a VGG16-sized caffemodel,
# the shipped samples through a loopback mirror), 2 iterations per stage, killed once and rerun.
# About 10 minutes and 9 GB of disk on 2 CPU cores: not part of .ci/run (reproduce/pipeline/dryrun.py).
DRYRUN ?= runs/dryrun

reproduce-voc-dryrun: $(STAMP)
	$(PY) -m reproduce.pipeline.dryrun $(DRYRUN) --fresh

# ---------------------------------------------------------------------------------------------
bench: $(STAMP)
	$(PY) -m bench.run

# voc-fcn8s on the GPU: exact fp32 and bf16 forward / training step at 500x500 and 500x375, peak GPU
# memory, hours per 100k iterations, the deterministic mode's cost, and how busy the real training
# loop keeps the GPU -> results/bench/gpu.{json,md} (bench/case_gpu.py; exit 2 without CUDA).
bench-gpu: $(STAMP)
	$(PY) -m bench.case_gpu --out results/bench/gpu.json

# make oracle (regenerate the Caffe goldens; root, Debian mirror) and make test-oracle (live check)
include tools/caffe_oracle/oracle.mk
