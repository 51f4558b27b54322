# `make run`: the console on https://<host>:8007 with a Celery worker and the scheduler.
# `make test`: the whole test suite. Both work on a fresh Debian machine with only Python.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.txt | cut -c1-12)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-deps benchmark soak clean

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
	# exec: the supervisor's parent is make itself, so it dies with make (pbsweb/supervisor.py)
	exec env PYTHONUNBUFFERED=1 $(BIN)/python -m pbsweb.supervisor Procfile

# Everything the suite needs, so that nothing is skipped (with CI set a skip fails):
# Debian's chromium drives the browser tests; redis-server is started by the
# tests only if nothing answers on 127.0.0.1:6379; PostgreSQL (scale-out test)
# must answer on 127.0.0.1:5432 to user postgres without a password; mount and
# setpriv (util-linux) make the tiny filesystems of the disk-full tests (as root).
answers = timeout 2 bash -c 'echo > /dev/tcp/127.0.0.1/$(1)' 2>/dev/null
test-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v redis-server >/dev/null || $(call answers,6379) || missing="$$missing redis-server"; \
	$(call answers,5432) || command -v pg_ctlcluster >/dev/null || missing="$$missing postgresql"; \
	command -v setpriv >/dev/null && command -v mount >/dev/null || missing="$$missing util-linux mount"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@if ! $(call answers,5432); then \
		version=$$(ls /etc/postgresql | sort -V | tail -1); \
		hba=/etc/postgresql/$$version/main/pg_hba.conf; \
		$(SUDO) grep -q '^host all postgres 127.0.0.1/32 trust' $$hba || \
			$(SUDO) sed -i '1i host all postgres 127.0.0.1/32 trust' $$hba; \
		echo "starting PostgreSQL $$version"; \
		$(SUDO) pg_ctlcluster $$version main start; \
	fi

test: $(STAMP) test-deps
	PBSWEB_DATA_DIR=$(CURDIR)/var/test $(BIN)/python -m pytest

benchmark: $(STAMP)
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/sync.py
	$(BIN)/python benchmarks/pages.py

# The long crash/fault soak: 24 kill points per operation (CRASH_SEED=N repeats a run).
soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py --points 24

clean:
	rm -rf var/test .pytest_cache
