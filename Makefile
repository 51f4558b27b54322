# `make run`: the console on https://<host>:8007 with a Celery worker and the scheduler.
# `make test`: the whole test suite. Both work on a fresh Debian machine with only Python.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.txt | cut -c1-12)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-deps benchmark clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV) || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py firstrun
	PYTHONUNBUFFERED=1 $(BIN)/honcho -f Procfile start

# Debian's chromium drives the browser tests; redis-server is started by the
# tests only if nothing answers on 127.0.0.1:6379.
test-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v redis-server >/dev/null || (echo PING | timeout 2 bash -c 'cat > /dev/tcp/127.0.0.1/6379' 2>/dev/null) || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

test: $(STAMP) test-deps
	PBSWEB_DATA_DIR=$(CURDIR)/var/test $(BIN)/python -m pytest

benchmark: $(STAMP)
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/sync.py
	$(BIN)/python benchmarks/pages.py

clean:
	rm -rf var/test .pytest_cache
