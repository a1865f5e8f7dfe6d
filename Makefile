# MaaS developer entry points. `make demo` and `make test` work on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# checkov pins its own dependency tree (it conflicts with aws-sam-cli's), so it lives in its own venv.
TOOLS  ?= .venv-tools
# The stock KServe v2 clients (tritonclient.http, the kserve SDK) the protocol tests run: their own venv too.
CLIENTS ?= .venv-clients
# sam build for the python3.12 runtime needs a python3.12 on PATH (pyenv's, when there is one).
PY312_DIR := $(shell d=$$(ls -d $$(pyenv root 2>/dev/null)/versions/3.12*/bin 2>/dev/null | tail -1); \
	[ -n "$$d" ] && echo "$$d" || { p=$$(command -v python3.12 2>/dev/null) && dirname "$$p"; })
# No telemetry from sam (and no network attempt for it).
export SAM_CLI_TELEMETRY := 0

.PHONY: install demo test test-unit fuzz lint build validate api bench bench-quick bench-large clean lock

install: $(VENV)/.installed

$(TOOLS)/.installed: constraints-checkov.txt
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(TOOLS)/bin/python -m pip install --quiet -r constraints-checkov.txt
	touch $@

$(CLIENTS)/.installed: constraints-clients.txt
	test -x $(CLIENTS)/bin/python || $(PYTHON) -m venv $(CLIENTS)
	$(CLIENTS)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(CLIENTS)/bin/python -m pip install --quiet -r constraints-clients.txt
	touch $@

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "MaaS needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	# setuptools warns about every editable install in a box of 10 lines; errors still show.
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -c constraints.txt -e ".[training,dev]"
	touch $@

demo: install ## train, publish to the embedded S3, serve locally and send real predictions
	$(BIN)/maas demo

test: install $(TOOLS)/.installed $(CLIENTS)/.installed ## unit, training and integration tests (the local stack runs on 127.0.0.1; checkov for the template test; tritonclient and the kserve SDK for the protocol tests)
	$(BIN)/pytest

fuzz: install ## long API fuzzing (schemathesis from /openapi.json, stateful phase too): >= 1,000 requests, 0 failures
	MAAS_FUZZ_MAX_EXAMPLES=30 MAAS_FUZZ_MIN_REQUESTS=1000 MAAS_FUZZ_PHASES=examples,coverage,fuzzing,stateful \
		$(BIN)/pytest tests/integration/test_fuzz.py -rxX

test-unit: install
	$(BIN)/pytest tests/unit

lint: install $(TOOLS)/.installed ## ruff, mypy, cfn-lint with AWS's serverless rules (translated) and sam validate --lint, checkov (both), detect-secrets
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# mypy has no package-dir: it reads src/ as maas_core through a link (src/__init__.py).
	mkdir -p .maas/typecheck && ln -sfn ../../src .maas/typecheck/maas_core
	MYPYPATH=.maas/typecheck $(BIN)/mypy -p maas_core -p training -p maas
	@# template.yaml and its nested applications (templates/*.yaml): each translated, linted and scanned.
	rm -rf build/translated
	$(BIN)/python -m maas.template_check template.yaml --output build/translated
	for t in template.yaml templates/*.yaml; do AWS_DEFAULT_REGION=us-east-1 $(BIN)/sam validate --lint -t $$t || exit 1; done
	$(TOOLS)/bin/checkov --quiet --compact --skip-download --framework cloudformation \
		$(foreach t,template.yaml $(wildcard templates/*.yaml),-f $(t))
	$(TOOLS)/bin/checkov --quiet --compact --skip-download --framework cloudformation \
		$(foreach t,build/translated/template.json $(patsubst %.yaml,build/translated/%.json,$(wildcard templates/*.yaml)),-f $(t))
	git ls-files -z --cached --others --exclude-standard | xargs -0 $(BIN)/detect-secrets-hook --baseline .secrets.baseline

validate: lint

build: install ## sam build without a container (python3.12 runtime)
	@test -n "$(PY312_DIR)" || { echo "sam build needs python3.12 on PATH (pyenv install 3.12)"; exit 1; }
	PATH="$(PY312_DIR):$(CURDIR)/$(BIN):$$PATH" $(BIN)/sam build --template template.yaml
	du -sh .aws-sam/build/Serving/ApiFunction

bench: install ## cold start, memory, size, latency, batch, compression vs TensorFlow -> bench/results.{json,md,png}
	$(BIN)/python -m bench

bench-quick: install ## the same with fewer runs, a smaller batch file and no load test
	$(BIN)/python -m bench --quick

bench-large: install ## size ladder (1-400 MB transformer encoders) and transformer serving -> bench/results-large.{json,md,png}
	$(BIN)/python -m bench.ladder

api: install ## the local API on 127.0.0.1:3000
	$(BIN)/maas local start-api --port 3000

lock: ## refresh constraints.txt from the current venv
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^maas' > constraints.txt

clean:
	rm -rf .maas .aws-sam build *.egg-info .pytest_cache .ruff_cache .mypy_cache
