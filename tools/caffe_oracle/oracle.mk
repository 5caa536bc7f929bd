# Caffe oracle targets. Included at the end of the top-level Makefile (after PY and STAMP are set):
#     include tools/caffe_oracle/oracle.mk
# Both targets need root (debootstrap, chroot, bind mounts) and the Debian mirror named in the host's
# apt sources; the chroot (~830 MB, ~1 minute to build) lives in .oracle/ (git-ignored).

ORACLE_CHROOT ?= $(CURDIR)/.oracle/chroot
# Nets checked live by test-oracle (full width, 500 x 500, batch 1; ~1 minute and ~1 GB of disk each).
ORACLE_NETS   ?= voc-fcn8s

.PHONY: oracle-chroot oracle test-oracle test-export-oracle

oracle-chroot:
	bash tools/caffe_oracle/build_chroot.sh $(ORACLE_CHROOT)

# Regenerate the committed goldens in tests/fixtures/oracle/ with real Caffe (about 30 s for all).
# GOLDEN_NETS="voc-fcn-googlenet" remakes those nets only (the manifest keeps the others' entries): on
# another machine Caffe's float32 results can differ in the last bits, so remake only what changed.
GOLDEN_NETS ?=
oracle: oracle-chroot
	ORACLE_CHROOT=$(ORACLE_CHROOT) bash tools/caffe_oracle/run.sh tools/caffe_oracle/make_goldens.py \
		--out tests/fixtures/oracle $(GOLDEN_NETS)

# Live comparison at full width on a 500 x 500 input (structure, forward, loss; no SGD goldens are made
# live; see tests/test_oracle_caffe.py for
# why the gradient test is deselected at this size).
test-oracle: oracle-chroot $(STAMP)
	rm -rf .oracle/live
	ORACLE_CHROOT=$(ORACLE_CHROOT) bash tools/caffe_oracle/run.sh tools/caffe_oracle/make_goldens.py \
		--live --out .oracle/live $(ORACLE_NETS)
	FCN_ORACLE_DIR=.oracle/live $(PY) -m pytest -q tests/test_oracle_caffe.py -k "not gradients_equal and not sgd_steps"

# `fcn export caffe` checked in real Caffe: the exported deploy.prototxt + caffemodel of each net (full
# width by default, random weights, a 1 x C x H x W input) must give the project's scores within 1e-5
# relative (tools/caffe_oracle/export_check.py). Report: .oracle/export/report.md.
EXPORT_ORACLE_NETS  ?= voc-fcn8s voc-fcn8s-atonce voc-fcn-alexnet siftflow-fcn16s nyud-fcn32s-color-hha nyud-fcn32s-color-d voc-fcn-googlenet
EXPORT_ORACLE_WIDTH ?= 1
EXPORT_ORACLE_SIZE  ?= 288 352

test-export-oracle: oracle-chroot $(STAMP)
	rm -rf .oracle/export
	$(PY) tools/caffe_oracle/export_check.py prepare .oracle/export $(EXPORT_ORACLE_NETS) \
		--width $(EXPORT_ORACLE_WIDTH) --size $(EXPORT_ORACLE_SIZE)
	ORACLE_CHROOT=$(ORACLE_CHROOT) OPENBLAS_NUM_THREADS=2 bash tools/caffe_oracle/run.sh \
		tools/caffe_oracle/export_forward.py .oracle/export
	$(PY) tools/caffe_oracle/export_check.py compare .oracle/export
