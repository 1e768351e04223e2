# make test  - install what is missing (into .venv), then lint, build the docs and run the tests
# make demo  - install what is missing, then train, evaluate and draw the CPU detection demo
#              and the classification demo
# make seg-demo - the same for the Cityscapes-layout segmentation demo
# make cls-demo - the classification demo alone (ImageNet layout, part of make demo;
#              it writes to $(DEMO_DIR)/classification, where make onnx-demo reads it)
# make cuda-emulation - the full CPU proof of the CUDA kernels: every float through the
#                  16-bit conversions, the full random sweep under ASan+UBSan and TSan
# make onnx-demo - export the trained demos to ONNX, evaluate them in onnxruntime and PyTorch
# make deploy-demo - the same with AOTInductor packages (.pt2) instead of ONNX
# make docs  - build the documentation (docs/_build/html) with warnings as errors; part of make test
#
# Use an existing environment with `make test PY=/path/to/python` (it must have
# a torch already; TORCH= skips installing one). The mmcv wheel is built once
# per torch/Python version and cached outside the checkout, in WHEEL_CACHE.
PYTHON      ?= python3
VENV        ?= .venv
PY          ?= $(VENV)/bin/python
TORCH       ?= torch==2.14.1 torchvision==0.29.1
MMCV        := mmcv==2.1.0
STACK       := mmengine==0.10.7 mmdet==3.3.0 mmsegmentation==1.2.2 mmpretrain==1.2.0 ftfy regex \
               pycocotools==2.0.11 cityscapesscripts==2.3.0
# openmim without its declared dependencies: they include opendatalab, whose own pins
# would replace setuptools with 60.2 (torch 2.14 needs >= 77.0.3). What mim search/train/test
# import is the `mim` extra of setup.cfg.
OPENMIM     := openmim==0.3.9
WHEEL_CACHE ?= $(HOME)/.cache/mmrednet/wheels
STAMP       := $(VENV)/.mmrednet-installed
# openmim 0.3.9 (and mmengine's `mmrednet::` lookup) expect a package next to its metadata,
# <distribution location>/mmrednet. An editable install (PEP 660) puts only the metadata
# there and serves the package from the checkout through an import hook, so mim finds no
# model index: link the checkout's package there, unless a real package is there already.
MIM_LINK    = site=$$($(PY) -c "import importlib.metadata as m; \
                print(m.distribution('mmrednet').locate_file(''))") && \
              { [ -d "$$site/mmrednet" ] && [ ! -L "$$site/mmrednet" ] || \
                ln -sfn "$(CURDIR)/mmrednet" "$$site/mmrednet"; }
# Where the demos write (and make onnx-demo / deploy-demo read) their work dirs.
DEMO_DIR    ?= work_dirs/demo
SEG_DEMO_DIR ?= work_dirs/seg_demo

.PHONY: install test lint docs demo seg-demo cls-demo onnx-demo deploy-demo benchmark cuda-emulation clean
.DEFAULT_GOAL := test

install: $(STAMP)

$(STAMP): Makefile setup.py setup.cfg pyproject.toml $(wildcard kernels/*.cpp kernels/*.h) mmrednet/ops/schemas.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH) numpy ninja "setuptools>=77.0.3,<82" wheel
	@$(PY) -c "import mmcv.ops" 2>/dev/null || { \
	  tag=$$($(PY) -c "import sys, torch; print(f'torch{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}')"); \
	  cache="$(WHEEL_CACHE)/$$tag"; mkdir -p "$$cache"; \
	  ls "$$cache"/mmcv-*.whl >/dev/null 2>&1 || { \
	    echo "Building $(MMCV) with its ops for $$tag (about 10 minutes, once) ..."; \
	    PYTHON=$(PY) bash tools/build_mmcv_wheel.sh $(MMCV) "$$cache" || exit 1; }; \
	  $(PY) -m pip install -q "$$cache"/mmcv-*.whl || exit 1; }
	$(PY) -m pip install -q $(STACK)
	$(PY) -m pip install -q --no-build-isolation -e ".[tests,docs,mim]"
	$(PY) -m pip install -q --no-deps $(OPENMIM)
	@$(MIM_LINK)
	@mkdir -p $(dir $(STAMP)) && touch $(STAMP)

lint: install
	$(PY) -m ruff check .

docs: install
	$(PY) tools/misc/generate_model_zoo.py --check
	$(PY) -m sphinx -E -W --keep-going -n -q -b html docs docs/_build/html

test: lint docs
	$(PY) -m pytest -q -n 2 tests

demo: install
	PYTHON=$(PY) bash tools/run_demo.sh $(DEMO_DIR)

seg-demo: install
	PY=$(PY) WORK_DIR=$(SEG_DEMO_DIR) bash tools/run_seg_demo.sh

cls-demo: install
	PYTHON=$(PY) bash tools/run_cls_demo.sh $(DEMO_DIR)/classification

onnx-demo: install
	PYTHON=$(PY) bash tools/deployment/compare_demos.sh $(DEMO_DIR) $(SEG_DEMO_DIR)

deploy-demo: install
	BACKEND=aoti PYTHON=$(PY) bash tools/deployment/compare_demos.sh $(DEMO_DIR) $(SEG_DEMO_DIR)

benchmark: install
	$(PY) tools/benchmark_involution.py --out-dir work_dirs/benchmark

cuda-emulation: install
	$(PY) tools/cuda_emulation.py --out-dir work_dirs/cuda_emulation

clean:
	rm -rf build mmrednet/*.so work_dirs docs/_build
