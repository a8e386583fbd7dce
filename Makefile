# mailring — one top-level GNU Makefile.
#
#   make            build every library and program (into build/)
#   make test       install deps, build, run unit + integration tests
#   make run        install deps, build, start the demo cluster on loopback
#   make asan       the whole test suite on an ASan+UBSan build (build-asan/)
#   make fuzz       every libFuzzer target for FUZZ_SECONDS (build-fuzz/)
#   make install    PREFIX=/usr/local DESTDIR=
#   make clean
#
# Sources are found per directory: every lib/*.c, auth/*.c, ring/*.c,
# proxy/*.c and backend/*.c that is not a program entry point (main*.c)
# goes into that directory's static library. Programs are listed below.

.DEFAULT_GOAL := all
SHELL := /bin/bash

CC       ?= cc
BUILD    ?= build
PREFIX   ?= /usr/local
DESTDIR  ?=
FUZZ_SECONDS ?= 60
PYTHON   ?= /usr/bin/python3
PYTEST_ARGS ?=

# Debian package that provides each pkg-config module, for the error message.
PKG_MODULES := openssl:libssl-dev libevent:libevent-dev \
	libevent_openssl:libevent-dev libevent_pthreads:libevent-dev \
	hiredis:libhiredis-dev ldns:libldns-dev libcrypt:libcrypt-dev
TEST_PKG_MODULES := cmocka:libcmocka-dev

pkg_names = $(foreach m,$(1),$(firstword $(subst :, ,$(m))))

ifeq ($(filter clean deps help,$(MAKECMDGOALS)),)
ifeq ($(shell command -v pkg-config 2>/dev/null),)
$(error pkg-config not found: install the Debian package 'pkg-config' (or run 'make deps'))
endif
$(foreach m,$(PKG_MODULES) $(TEST_PKG_MODULES),$(if $(shell pkg-config --exists $(firstword $(subst :, ,$(m))) && echo ok),,$(error missing library '$(firstword $(subst :, ,$(m)))': install the Debian package '$(lastword $(subst :, ,$(m)))' (or run 'make deps'))))
DEP_CFLAGS := $(shell pkg-config --cflags $(call pkg_names,$(PKG_MODULES)))
DEP_LIBS   := $(shell pkg-config --libs $(call pkg_names,$(PKG_MODULES))) -lpthread -lm
TEST_CFLAGS := $(shell pkg-config --cflags cmocka)
TEST_LIBS   := $(shell pkg-config --libs cmocka)
endif

WARNINGS := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wvla -Wpointer-arith \
	-Wstrict-prototypes -Wmissing-prototypes -Wundef -Wcast-qual \
	-Wnull-dereference -Wimplicit-fallthrough
OPT      ?= -O2
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE $(OPT) -g $(WARNINGS) -fno-strict-aliasing \
	-I. -Ilib $(DEP_CFLAGS)
ifeq ($(SAN),1)
CFLAGS_BASE += -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=all
LDFLAGS_SAN := -fsanitize=address,undefined
endif
ALL_CFLAGS := $(CFLAGS_BASE) $(CFLAGS)
ALL_LDFLAGS := $(LDFLAGS_SAN) $(LDFLAGS)

# Rebuild everything when the compiler or flags change.
FLAGS_STAMP := $(BUILD)/.flags
FLAGS_NOW := $(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS)
$(shell mkdir -p $(BUILD); [ "$$(cat $(FLAGS_STAMP) 2>/dev/null)" = "$(FLAGS_NOW)" ] || echo "$(FLAGS_NOW)" > $(FLAGS_STAMP))

# ---- libraries ---------------------------------------------------------
LIB_DIRS := lib auth ring proxy backend
lib_srcs = $(filter-out $(1)/main%.c,$(wildcard $(1)/*.c))
define lib_template
$(1)_SRCS := $$(call lib_srcs,$(1))
$(1)_OBJS := $$(patsubst %.c,$(BUILD)/%.o,$$($(1)_SRCS))
$(1)_LIB  := $$(if $$($(1)_SRCS),$(BUILD)/$(1)/libmr$(1).a)
$(BUILD)/$(1)/libmr$(1).a: $$($(1)_OBJS)
	@rm -f $$@
	$$(AR) rcs $$@ $$^
endef
$(foreach d,$(LIB_DIRS),$(eval $(call lib_template,$(d))))
# Link order: higher layers first.
ALL_LIBS := $(backend_LIB) $(proxy_LIB) $(ring_LIB) $(auth_LIB) $(lib_LIB)

$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

# ---- programs ----------------------------------------------------------
# name:entry-point; a program whose entry point does not exist yet is skipped.
PROGRAM_DEFS := mailring-proxy:proxy/main.c mailring-backend:backend/main.c \
	mailring:ring/main_cli.c
PROGRAMS :=
define prog_template
ifneq ($$(wildcard $(2)),)
PROGRAMS += $(BUILD)/$(1)
$(BUILD)/$(1): $(patsubst %.c,$(BUILD)/%.o,$(2)) $$(ALL_LIBS)
	$$(CC) $$(ALL_LDFLAGS) -o $$@ $$^ $$(DEP_LIBS)
endif
endef
$(foreach p,$(PROGRAM_DEFS),$(eval $(call prog_template,$(firstword $(subst :, ,$(p))),$(lastword $(subst :, ,$(p))))))

# ---- unit tests (cmocka, one binary per module) --------------------------
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRCS))
$(BUILD)/tests/unit/%.o: tests/unit/%.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(TEST_CFLAGS) -Wno-missing-prototypes -MMD -MP -c $< -o $@
$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(ALL_LIBS)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(TEST_LIBS) $(DEP_LIBS)

# ---- bench tools (built with everything, so they cannot rot) -------------
BENCH_SRCS := $(wildcard tests/bench/*.c)
BENCH_BINS := $(patsubst tests/bench/%.c,$(BUILD)/tests/bench/%,$(BENCH_SRCS))
$(BUILD)/tests/bench/%: $(BUILD)/tests/bench/%.o $(ALL_LIBS)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS)

# ---- test tools (small programs the integration tests drive) -------------
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(patsubst tests/tools/%.c,$(BUILD)/tests/%,$(TOOL_SRCS))
$(TOOL_BINS): $(BUILD)/tests/%: $(BUILD)/tests/tools/%.o $(ALL_LIBS)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS)

.SECONDARY:
.PHONY: all deps test check unit integration soak asan fuzz fuzz-build run install clean help
all: $(PROGRAMS) $(UNIT_BINS) $(BENCH_BINS) $(TOOL_BINS)

deps:
	@sh deploy/deps.sh

unit: $(UNIT_BINS)
	@sh tests/run_unit.sh $(UNIT_BINS)

integration: $(PROGRAMS) $(BENCH_BINS) $(TOOL_BINS)
	cd tests/integration && MAILRING_BUILD=$(abspath $(BUILD)) \
		$(PYTHON) -m pytest -q -p no:cacheprovider $(or $(PYTEST_ARGS),.)

# the multi-proxy torture test alone, for longer (tests/integration/test_torture.py)
soak: $(PROGRAMS)
	cd tests/integration && MAILRING_BUILD=$(abspath $(BUILD)) MAILRING_TORTURE_SECS=300 \
		$(PYTHON) -m pytest -q -p no:cacheprovider test_torture.py

check: unit integration

test: deps
	$(MAKE) all
	$(MAKE) check

asan: deps
	$(MAKE) BUILD=build-asan SAN=1 OPT=-O1 all
	MAILRING_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(MAKE) BUILD=build-asan SAN=1 OPT=-O1 check

# ---- fuzzing (clang libFuzzer) -------------------------------------------
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BUILD := build-fuzz
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(FUZZ_SRCS))
# Fuzz targets exercise parsers in lib/, auth/, ring/ and backend/: link
# those as an archive, so a target pulls in only the objects it uses.
FUZZ_LIB_SRCS := $(foreach d,lib auth ring backend,$(call lib_srcs,$(d)))
FUZZ_ARCHIVE := $(FUZZ_BUILD)/libmrfuzz.a
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror -I. -Ilib \
	$(DEP_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined \
	-fno-sanitize-recover=all -fno-omit-frame-pointer
$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@
$(FUZZ_ARCHIVE): $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(FUZZ_LIB_SRCS))
	@rm -f $@
	$(AR) rcs $@ $^
$(FUZZ_BUILD)/%: $(FUZZ_BUILD)/obj/tests/fuzz/%.o $(FUZZ_ARCHIVE)
	clang -fsanitize=fuzzer,address,undefined -o $@ $^ $(DEP_LIBS)

fuzz-build: $(FUZZ_BINS)

fuzz: deps
	$(MAKE) fuzz-build
	@sh tests/fuzz/run_fuzz.sh $(FUZZ_SECONDS) $(FUZZ_BINS)

# ---- demo ---------------------------------------------------------------
run: deps
	$(MAKE) all
	@bash deploy/demo.sh $(abspath $(BUILD))

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin \
		$(DESTDIR)$(PREFIX)/share/mailring
	for p in $(notdir $(PROGRAMS)); do \
		case $$p in mailring) dir=bin ;; *) dir=sbin ;; esac; \
		install -m 755 $(BUILD)/$$p $(DESTDIR)$(PREFIX)/$$dir/$$p; \
	done
	install -m 644 deploy/examples/*.conf $(DESTDIR)$(PREFIX)/share/mailring/

clean:
	rm -rf build build-asan build-fuzz

help:
	@sed -n '2,12p' Makefile

-include $(shell find $(BUILD) $(FUZZ_BUILD) -name '*.d' 2>/dev/null)

# ---- benchmarks (tests/bench/bench.py; docs/bench/results.md) -------------
# BENCH_SCALE=quick (seconds) | default (<= ~10 min) | large (issue sizes)
.PHONY: bench
bench: deps
	$(MAKE) all
	$(PYTHON) tests/bench/bench.py
