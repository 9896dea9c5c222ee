# The README's two commands: `make demo` and `make test`. Both set everything up on a fresh
# machine: a virtual environment, torch, the runtime and test dependencies, the build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
DEPS := numpy h5py click matplotlib pytest hypothesis scipy setuptools wheel cmake ninja pybind11
SOURCES := $(shell find csrc -type f) CMakeLists.txt setup.py pyproject.toml lsswgan_core/_version.py

# compile-only CUDA check: a CUDA torch in its own venv, the real toolkit (not a wrapper)
CUDA_VENV ?= .venv-cuda
CUDA_TORCH_SPEC ?= torch==2.14.1
CUDA_ARCH ?= 9.0
CUDA_HOME ?= $(shell for d in "$$(dirname "$$(dirname "$$(readlink -f "$$(command -v nvcc)")")")" \
	/usr/local/cuda /opt/cuda; do [ -f "$$d/include/cuda_runtime.h" ] && [ -x "$$d/bin/nvcc" ] \
	&& echo "$$d" && break; done 2>/dev/null)

.PHONY: all build test test-fast demo bench cuda-check gpu-check clean
all: build

$(VENV)/.deps: Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q $(DEPS)
	touch $@

$(VENV)/.built: $(VENV)/.deps $(SOURCES)
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

build: $(VENV)/.built

test: build
	$(PY) -m pytest -q tests

# the fast lane: everything but the tests marked slow (subprocesses, torchrun, kills, full
# disks, the demo, the GPU check); about a minute on 2 cores
test-fast: build
	$(PY) -m pytest -q -m "not slow" tests

demo: build
	$(VENV)/bin/lsscore info
	$(VENV)/bin/lsscore demo --out demo --config configs/demo.toml

bench: build
	$(PY) bench/run.py

# the long reliability suite (its last run and timing: docs/reliability.md): full disks, kills,
# concurrent writers, 10,000 corrupted snapshots per format, hostile arguments
.PHONY: stress
stress: build
	OMP_NUM_THREADS=1 $(PY) bench/stress.py

cuda-check:
	@test -n "$(CUDA_HOME)" || { echo "cuda-check: no CUDA toolkit found (set CUDA_HOME)"; exit 1; }
	test -x $(CUDA_VENV)/bin/python || $(PYTHON) -m venv $(CUDA_VENV)
	$(CUDA_VENV)/bin/python -m pip install -q "$(CUDA_TORCH_SPEC)" numpy setuptools wheel cmake ninja
	CUDA_HOME=$(CUDA_HOME) TORCH_CUDA_ARCH_LIST=$(CUDA_ARCH) LSS_WITH_CUDA=ON \
		$(CUDA_VENV)/bin/python -m pip install -q --no-build-isolation --no-deps .
	cd /tmp && $(abspath $(CUDA_VENV))/bin/python -c "import lsswgan_core as lc, torch; \
		info = lc.build_info(); print(info); assert info['cuda_kernels'], 'CUDA kernels missing'; \
		ops = ['paint', 'paint_into', 'readout', 'readout_gradient', 'find_peaks', 'bin_power', \
		       'bin_power_backward', 'soft_histogram', 'soft_histogram_backward']; \
		missing = [o for o in ops if not torch._C._dispatch_has_kernel_for_dispatch_key('lsscore::' + o, 'CUDA')]; \
		assert not missing, missing; print('CUDA kernels registered for', len(ops), 'ops')"

# GPU first light (bench/gpu_check.py: build, CUDA tests, bench/run.py --device cuda, the
# training projection, a summary table): on a GPU machine whose python already
# has a CUDA torch (not the venv's CPU one); the script builds the extension itself. E.g.
# make gpu-check PYTHON=/usr/bin/python3 GPU_CHECK_ARGS="--out /tmp/gpu_check"
GPU_CHECK_ARGS ?=
gpu-check:
	$(PYTHON) bench/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf build *.egg-info lsswgan_core/_C*.so $(VENV)/.built
