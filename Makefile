# Two entry points (see README): `make study` runs the main job, `make test` runs the test suite.
# Both create .venv on first use and install everything the project needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: study test install install-test clean browser

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c constraints.txt -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -c constraints.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

study: $(VENV)/.installed
	$(PY) -m study.launch $(ARGS)

# Headless Chromium (Debian package `chromium`) for the report test that opens index.html.
browser:
	@command -v chromium >/dev/null || { SUDO=$$( [ "$$(id -u)" -eq 0 ] || ! command -v sudo >/dev/null || echo sudo ); \
		$$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends chromium; }

test: $(VENV)/.installed-test browser
	$(PY) -m pytest -q $(ARGS)

clean:
	rm -rf $(VENV)
