# virtmig: two commands do all set-up on a fresh Debian 12 or 13 machine (as root).
#   make certify   install, bring up the embedded lab, certify its host pair, write the report
#   make test      install, run the project's own tests (unit + real-lab)
#   make unit      the unit tests only: seconds, no root, no daemons, no lab
#   make soak      the live matrix with --round-trips 5 (nightly)
#   make nightly   every suite on every pair of an inventory, pairs in parallel (docs/nightly.md)
# Against real hosts: make certify ARGS="--src h1 --dst h2"

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN := $(shell date -u +%Y%m%dT%H%M%SZ)
REPORT_DIR := reports/$(RUN)
ARGS ?=

.PHONY: deps certify nightly soak test nightly-lab killed-runs realkernel realkernel-migration test-other-release unit lint lab-up lab-down bench clean

$(VENV)/.apt-stamp: debian-packages.txt .ci/debian-packages
	apt-get update -qq
	packages=$$(.ci/debian-packages debian-packages.txt) && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$packages
	mkdir -p $(VENV) && touch $@

$(VENV)/.pip-stamp: requirements.txt $(VENV)/.apt-stamp
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

deps: $(VENV)/.pip-stamp

certify: deps
	mkdir -p $(REPORT_DIR)
	start=$$(date +%s); \
	$(PY) -m pytest suites -p no:cacheprovider $(ARGS) \
	    --html=$(REPORT_DIR)/report.html --self-contained-html \
	    --junitxml=$(REPORT_DIR)/junit.xml; \
	rc=$$?; echo "report: $(REPORT_DIR)/report.html (also reports/latest/report.html)"; \
	echo "certify wall time: $$(( $$(date +%s) - start )) s (lab up, guest build if any, every suite)"; exit $$rc

# A night of many pairs (docs/nightly.md): every suite on each pair of INVENTORY's GROUP (PAIRS: ring by
# default, mesh, or h1:h2,h3:h4; without INVENTORY the embedded lab's hypervisors), one xdist worker per pair
# that can run at once (the "at once" of the pairs' schedule: a ring of 4 runs 2 at a time), each pair one
# xdist group, --fail-on-regression; html, results.json and junit.xml in reports/<run>/.
INVENTORY ?=
GROUP ?=
PAIRS ?=
NIGHT_ARGS = $(if $(INVENTORY),--inventory $(INVENTORY)) $(if $(GROUP),--group $(GROUP)) \
	$(if $(PAIRS),--pairs $(PAIRS),$(if $(INVENTORY),,--pairs ring)) $(ARGS)
nightly: deps
	mkdir -p $(REPORT_DIR)
	n=$$($(PY) -m pytest suites -p no:cacheprovider --collect-only -q $(NIGHT_ARGS) \
	    | sed -n 's/^virtmig pairs: [0-9]*, at once: \([0-9]*\).*/\1/p'); \
	workers=$$([ "$${n:-1}" -gt 1 ] && echo "-n $$n --dist loadgroup"); \
	echo "nightly: $${n:-1} pair(s) at once: $${workers:-no xdist}"; \
	$(PY) -m pytest suites -p no:cacheprovider $$workers --fail-on-regression $(NIGHT_ARGS) \
	    --html=$(REPORT_DIR)/report.html --self-contained-html \
	    --junitxml=$(REPORT_DIR)/junit.xml; \
	rc=$$?; echo "report: $(REPORT_DIR)/report.html (every night: reports/index.html)"; exit $$rc

# The whole live matrix, five round trips per column: what a nightly run does; a false failure shows here.
soak: deps
	mkdir -p $(REPORT_DIR)
	$(PY) -m pytest suites/live -p no:cacheprovider --round-trips 5 $(ARGS) \
	    --html=$(REPORT_DIR)/report.html --self-contained-html \
	    --junitxml=$(REPORT_DIR)/junit.xml; \
	rc=$$?; echo "report: $(REPORT_DIR)/report.html"; exit $$rc

# ruff: the rules in pyproject.toml ([tool.ruff]); mypy --strict; the layer rule runs in tests/test_layers.py.
lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: deps lint
	$(PY) -m pytest tests -m "not nightly_lab and not realkernel_migration" --durations=15 $(ARGS)

# #12's night on a lab of four hypervisors: a ring of four pairs from the lab's inventory under -n 2 (about 6 min).
nightly-lab: deps
	$(PY) -m pytest tests -m nightly_lab $(ARGS)

# The killed-run proof of #11 (SIGKILL at four moments, then the same run again; also in make test): about 6 minutes.
killed-runs: deps
	$(PY) -m pytest tests -m killed_runs $(ARGS)

# Only the SELinux suite and kernel NFS on the lab's real-kernel host k1 (#14; in make test too): the first
# run builds its image (about 3 minutes, cached in /var/cache/virtmig/realkernel), then about 6 minutes.
realkernel: deps
	$(PY) -m pytest tests -m realkernel $(ARGS)

# #14's stretch: a live migration from k1 to h1 over k1's kernel NFS, without --unsafe (k1 booted for it).
realkernel-migration: deps
	$(PY) -m pytest tests -m realkernel_migration -s $(ARGS)

# make test again inside a root file system of the other Debian release (12 <-> 13), cached in
# /var/cache/virtmig/rootfs-<release>; see .ci/other-release.  Never beside another lab user.
test-other-release:
	.ci/other-release

# Leaves out the lab tests and those that start a root sshd; no cache written into the checkout.
unit: deps
	$(PY) -m pytest tests -m "not lab and not sshd" -p no:cacheprovider $(ARGS)

# HYPERVISORS=N (2-6): a lab of h1..hN and its Ansible inventory, for a night of many pairs.
lab-up: deps
	$(PY) -m virtmig.lab up $(if $(HYPERVISORS),--hypervisors $(HYPERVISORS))

lab-down:
	$(PY) -m virtmig.lab down

bench: deps
	$(PY) -m pytest bench -s $(ARGS)

clean: lab-down
	rm -rf reports .mypy_cache .pytest_cache
