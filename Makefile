# hakmem build.
#   make                         release libraries: build/libhakmem.so, build/libhakmem.a
#   make BUILD_FLAVOR=debug      debug libraries:   build/libhakmem-debug.so, .a
#   make BUILD_FLAVOR=hardened   hardened libraries: build/libhakmem-hardened.so, .a
#   make test                    everything CI runs, in turn (~25 min): test-quick,
#                                test-sanitize, fuzz, test-long
#   make test-quick              builds the three flavors and runs every test against each
#                                (unit, misuse, chaos, static, LD_PRELOAD, packaging)
#   make test-sanitize           the tests under UBSan and TSan (hak_-only libraries,
#                                build/libhakmem-ubsan.so, -tsan.so; programs in build/san/)
#   make fuzz [FUZZ_SECONDS=60]  libFuzzer on the hak_ API, release and debug flavors
#   make test-long               soak (HAKMEM_SOAK_SECONDS, 600) and chaos tests at
#                                HAKMEM_TEST_SCALE (4)
#   make bench                   benchmark table: hakmem vs system, mimalloc, jemalloc, tcmalloc;
#                                chart in bench/results/bench.svg, .png (gnuplot)
#   make install PREFIX=/usr/local [LIBDIR=...] [DESTDIR=...]
#                                libraries, header, pkg-config and CMake files,
#                                man pages, the launcher bin/hakmem
#   make bench_random_mixed_hakmem BUILD_FLAVOR=release|debug [EXTRA_CFLAGS=...]

BUILD_FLAVOR ?= release
PREFIX       ?= /usr/local
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
BINDIR       ?= $(PREFIX)/bin
MANDIR       ?= $(PREFIX)/share/man
CC           ?= cc
B            := build

# The flavor's HAKMEM_DEBUG_COUNTERS gives way to one set in EXTRA_CFLAGS.
COUNTERS = $(if $(findstring HAKMEM_DEBUG_COUNTERS,$(EXTRA_CFLAGS)),,-DHAKMEM_DEBUG_COUNTERS=$(1))
FLAGS_release := -DNDEBUG -DHAKMEM_BUILD_RELEASE=1 $(call COUNTERS,0) -O3
FLAGS_debug   := -DHAKMEM_BUILD_DEBUG=1 $(call COUNTERS,1) -O1 -g
# release with the hot-path counters on: what counting costs (make bench)
FLAGS_counters := -DNDEBUG -DHAKMEM_BUILD_RELEASE=1 -DHAKMEM_DEBUG_COUNTERS=1 -O3
# release exporting only the hak_ names (no malloc, free, ...): for programs
# that keep their own allocator, e.g. under a sanitizer (make test-sanitize)
FLAGS_hak      := $(FLAGS_release) -DHAKMEM_OVERRIDE=0
# release plus canaries, quarantine, zero-on-free, guard pages, random
# carving (src/harden.c; each can be turned off by a HAKMEM_ option)
FLAGS_hardened := -DNDEBUG -DHAKMEM_BUILD_RELEASE=1 $(call COUNTERS,0) -DHAKMEM_HARDENED=1 -O3
SUFFIX_release :=
SUFFIX_hardened := -hardened
SUFFIX_debug   := -debug
SUFFIX_counters := -counters
SUFFIX_hak     := -hak
# hak_-only builds under a sanitizer (make test-sanitize): release code at
# -O2 -g, objects in build/obj-ubsan/ and build/obj-tsan/
FLAGS_san      := -DNDEBUG -DHAKMEM_BUILD_RELEASE=1 $(call COUNTERS,0) -DHAKMEM_OVERRIDE=0 \
                  -O2 -g -fno-omit-frame-pointer
FLAGS_ubsan    := $(FLAGS_san) -fsanitize=undefined -fno-sanitize-recover=all
FLAGS_tsan     := $(FLAGS_san) -fsanitize=thread
SUFFIX_ubsan   := -ubsan
SUFFIX_tsan    := -tsan
LDFLAGS_ubsan  := -fsanitize=undefined
LDFLAGS_tsan   := -fsanitize=thread
ifeq ($(filter $(BUILD_FLAVOR),release debug hardened),)
  $(error BUILD_FLAVOR must be release, debug or hardened)
endif
SUFFIX := $(SUFFIX_$(BUILD_FLAVOR))

# -fno-builtin: the compiler must not turn our own malloc+memset into a call
# to calloc, nor assume anything about the functions we are defining.
# -ftls-model=initial-exec: one %fs-relative load per thread-local access.
# -fvisibility=hidden + -fno-semantic-interposition: internal calls are direct.
BASE_CFLAGS := -std=gnu11 -Wall -Wextra -fPIC -fno-builtin -fno-plt -fno-tree-slp-vectorize \
               -ftls-model=initial-exec -fvisibility=hidden \
               -fno-semantic-interposition -fno-stack-protector -Iinclude -Isrc

# The version is defined once, in include/hakmem.h.
hv = $(shell sed -n 's/^\#define HAKMEM_VERSION_$(1) \([0-9][0-9]*\)$$/\1/p' include/hakmem.h)
VERSION_MAJOR := $(call hv,MAJOR)
VERSION := $(VERSION_MAJOR).$(call hv,MINOR).$(call hv,PATCH)
# Only the symbols listed in the version script are exported; a flavor built
# with -DHAKMEM_OVERRIDE=0 exports only the hak_ names.
MAP := src/hakmem.map
MAP_OF = $(if $(findstring HAKMEM_OVERRIDE=0,$(FLAGS_$(1))),src/hakmem-hak.map,$(MAP))

SRCS := $(wildcard src/*.c)
HDRS := $(wildcard src/*.h) include/hakmem.h

.PHONY: all lib test test-quick test-sanitize test-long bench install clean FORCE
all: lib
lib: $(B)/libhakmem$(SUFFIX).so $(B)/libhakmem$(SUFFIX).so.$(VERSION_MAJOR) $(B)/libhakmem$(SUFFIX).a

# One set of rules per flavor; objects in build/obj-<flavor>/.  A stamp file
# holding the flags makes a change of flags (EXTRA_CFLAGS) rebuild.  A flavor
# may set its own compiler (CC_<flavor>) and link flags (LDFLAGS_<flavor>).
define FLAVOR_RULES
CFLAGS_$(1) := $$(BASE_CFLAGS) $$(FLAGS_$(1)) $$(EXTRA_CFLAGS)
CC_$(1) ?= $$(CC)
OBJS_$(1) := $$(SRCS:src/%.c=$(B)/obj-$(1)/%.o)
$(B)/obj-$(1)/.flags: FORCE
	@mkdir -p $$(@D)
	@echo '$$(CC_$(1)) $$(CFLAGS_$(1))' | cmp -s - $$@ || echo '$$(CC_$(1)) $$(CFLAGS_$(1))' > $$@
$(B)/obj-$(1)/%.o: src/%.c $$(HDRS) $(B)/obj-$(1)/.flags
	$$(CC_$(1)) $$(CFLAGS_$(1)) -c $$< -o $$@
# libhakmem<suffix>.so.MAJOR.MINOR.PATCH with soname libhakmem<suffix>.so.MAJOR,
# and the two links to it: the soname (what programs load) and the .so (what
# -lhakmem and LD_PRELOAD=build/libhakmem.so use).
$(B)/libhakmem$$(SUFFIX_$(1)).so.$(VERSION): $$(OBJS_$(1)) $$(call MAP_OF,$(1))
	$$(CC_$(1)) -shared -Wl,-soname,libhakmem$$(SUFFIX_$(1)).so.$(VERSION_MAJOR) \
	  -Wl,--version-script,$$(call MAP_OF,$(1)) -Wl,-z,now $$(LDFLAGS) $$(LDFLAGS_$(1)) \
	  -o $$@ $$(OBJS_$(1)) -lpthread
$(B)/libhakmem$$(SUFFIX_$(1)).so.$(VERSION_MAJOR) $(B)/libhakmem$$(SUFFIX_$(1)).so: $(B)/libhakmem$$(SUFFIX_$(1)).so.$(VERSION)
	ln -sf libhakmem$$(SUFFIX_$(1)).so.$(VERSION) $$@
$(B)/libhakmem$$(SUFFIX_$(1)).a: $$(OBJS_$(1))
	rm -f $$@
	ar rcs $$@ $$^
endef
$(eval $(call FLAVOR_RULES,release))
$(eval $(call FLAVOR_RULES,debug))
$(eval $(call FLAVOR_RULES,hardened))
$(eval $(call FLAVOR_RULES,counters))
$(eval $(call FLAVOR_RULES,hak))
$(eval $(call FLAVOR_RULES,ubsan))
$(eval $(call FLAVOR_RULES,tsan))

# ---------------------------------------------------------------- benchmarks
BENCH_CFLAGS := -std=gnu11 -O2 -Wall -Wextra -Iinclude
BENCHES := $(B)/bench_random_mixed $(B)/bench_mt_mixed $(B)/bench_prodcons \
           $(B)/bench_largebuf $(B)/bench_rss $(B)/bench_realloc $(B)/bench_threads \
           $(B)/bench_large_remote $(B)/bench_server \
           $(B)/bench_larson $(B)/bench_xmalloc $(B)/bench_cache $(B)/bench_simple \
           $(B)/bench_alloc_test $(B)/bench_rptest $(B)/bench_mstress $(B)/bench_mleak \
           $(B)/bench_exec

$(B)/bench_%: bench/bench_%.c bench/bench_common.h
	@mkdir -p $(B)
	$(CC) $(BENCH_CFLAGS) -o $@ $< -lpthread

# The report's target: the benchmark linked directly with hakmem.
bench_random_mixed_hakmem: $(B)/libhakmem$(SUFFIX).a
	$(CC) $(BENCH_CFLAGS) -o $(B)/bench_random_mixed_hakmem$(SUFFIX) bench/bench_random_mixed.c $< -lpthread

# The table goes to stdout and bench/results/bench.md; bench/results/bench.dat
# holds its numbers, drawn by gnuplot (bench/bench_chart.gp) into
# bench/results/bench.svg and bench.png.
bench: $(BENCHES) $(B)/libhakmem.so $(B)/libhakmem-counters.so $(B)/libhakmem-hardened.so
	python3 bench/run_bench.py --lib $(B)/libhakmem.so --bindir $(B) \
	  --extra hakmem+counters=$(B)/libhakmem-counters.so \
	  --extra hakmem-hardened=$(B)/libhakmem-hardened.so \
	  --out bench/results/bench.md --chart bench/results

# --------------------------------------------------------------------- tests
TEST_CFLAGS := -std=gnu11 -O1 -g -Wall -Wextra -Iinclude -fno-builtin
CMOCKA_TESTS := test_api test_stress test_fork test_misuse test_diag test_tiers test_large test_chaos
TEST_BINS_R := $(CMOCKA_TESTS:%=$(B)/tests/%-release)
TEST_BINS_D := $(CMOCKA_TESTS:%=$(B)/tests/%-debug)
TEST_BINS_H := $(CMOCKA_TESTS:%=$(B)/tests/%-hardened)

$(B)/tests/%-release: tests/%.c tests/test_util.h $(B)/libhakmem.so $(B)/libhakmem.so.$(VERSION_MAJOR)
	@mkdir -p $(B)/tests
	$(CC) $(TEST_CFLAGS) -o $@ $< -L$(B) -Wl,-rpath,'$$ORIGIN/..' -lhakmem -lcmocka -lpthread

$(B)/tests/%-debug: tests/%.c tests/test_util.h $(B)/libhakmem-debug.so $(B)/libhakmem-debug.so.$(VERSION_MAJOR)
	@mkdir -p $(B)/tests
	$(CC) $(TEST_CFLAGS) -o $@ $< -L$(B) -Wl,-rpath,'$$ORIGIN/..' -lhakmem-debug -lcmocka -lpthread

$(B)/tests/%-hardened: tests/%.c tests/test_util.h $(B)/libhakmem-hardened.so $(B)/libhakmem-hardened.so.$(VERSION_MAJOR)
	@mkdir -p $(B)/tests
	$(CC) $(TEST_CFLAGS) -o $@ $< -L$(B) -Wl,-rpath,'$$ORIGIN/..' -lhakmem-hardened -lcmocka -lpthread

# 117 kinds of misuse, each in a child under LD_PRELOAD of a flavor (or any
# allocator): run_tests.sh checks the hardened flavor's table and that release
# and debug still stop every double and invalid free.  -O0 -fno-builtin: no
# misuse may be optimised away.
$(B)/tests/misuse_matrix: tests/misuse_matrix.c
	@mkdir -p $(B)/tests
	$(CC) -std=gnu11 -O0 -g -fno-builtin -Wall -Wextra -o $@ $< -lpthread

# test_chaos preloads this into a child of its own to make mmap fail on demand.
$(B)/tests/mmap_fail_shim.so: tests/mmap_fail_shim.c
	@mkdir -p $(B)/tests
	$(CC) -std=gnu11 -O1 -Wall -Wextra -shared -fPIC -o $@ $<
$(B)/tests/test_chaos-release $(B)/tests/test_chaos-debug $(B)/tests/test_chaos-hardened: $(B)/tests/mmap_fail_shim.so

$(B)/tests/test_static-release: tests/test_static.c $(B)/libhakmem.a
	@mkdir -p $(B)/tests
	$(CC) $(TEST_CFLAGS) -static -o $@ $< $(B)/libhakmem.a -lpthread

$(B)/tests/test_static-debug: tests/test_static.c $(B)/libhakmem-debug.a
	@mkdir -p $(B)/tests
	$(CC) $(TEST_CFLAGS) -static -o $@ $< $(B)/libhakmem-debug.a -lpthread

$(B)/tests/test_static-hardened: tests/test_static.c $(B)/libhakmem-hardened.a
	@mkdir -p $(B)/tests
	$(CC) $(TEST_CFLAGS) -static -o $@ $< $(B)/libhakmem-hardened.a -lpthread

# make test-sanitize: the tests against the hak_-only libraries built with
# UBSan and TSan (tests/run_sanitize.sh says which cases run under which),
# and the exports of build/libhakmem-hak.so (tests/check_hak_exports.sh).
# The test programs are built with the same sanitizer and call the hak_ names
# (tests/hak_names.h); they live in build/san/, out of run_tests.sh's way.
SAN_UBSAN_TESTS := $(CMOCKA_TESTS) san_canary
SAN_TSAN_TESTS  := test_stress test_api test_large test_tiers test_diag san_canary
SAN_BINS := $(SAN_UBSAN_TESTS:%=$(B)/san/%-ubsan) $(SAN_TSAN_TESTS:%=$(B)/san/%-tsan)
SAN_TEST_CFLAGS := $(TEST_CFLAGS) -fno-omit-frame-pointer -include tests/hak_names.h

$(B)/san/%-ubsan: tests/%.c tests/test_util.h tests/hak_names.h $(B)/libhakmem-ubsan.so $(B)/libhakmem-ubsan.so.$(VERSION_MAJOR)
	@mkdir -p $(B)/san
	$(CC) $(SAN_TEST_CFLAGS) -DHAKMEM_TEST_UBSAN -fsanitize=undefined -fno-sanitize-recover=all \
	  -o $@ $< -L$(B) -Wl,-rpath,'$$ORIGIN/..' -lhakmem-ubsan -lcmocka -lpthread

$(B)/san/%-tsan: tests/%.c tests/test_util.h tests/hak_names.h $(B)/libhakmem-tsan.so $(B)/libhakmem-tsan.so.$(VERSION_MAJOR)
	@mkdir -p $(B)/san
	$(CC) $(SAN_TEST_CFLAGS) -fsanitize=thread \
	  -o $@ $< -L$(B) -Wl,-rpath,'$$ORIGIN/..' -lhakmem-tsan -lcmocka -lpthread

test-sanitize: $(SAN_BINS) $(B)/libhakmem-hak.so $(B)/libhakmem.so
	sh tests/run_sanitize.sh $(B)

# make test is what CI runs (the README's test command): the quick suite,
# the sanitizer runs, the fuzzers for FUZZ_SECONDS each, then the long tests,
# one after the other; it stops at the first part that fails.
test:
	$(MAKE) test-quick
	$(MAKE) test-sanitize
	$(MAKE) fuzz
	$(MAKE) test-long

# Unit, misuse, chaos, static, preload and package tests of the three flavors.
test-quick: $(TEST_BINS_R) $(TEST_BINS_D) $(TEST_BINS_H) $(B)/tests/test_static-release \
	    $(B)/tests/test_static-debug $(B)/tests/test_static-hardened $(B)/tests/misuse_matrix \
	    $(B)/libhakmem-hardened.so
	sh tests/run_tests.sh $(B)

# The long tests: a soak of HAKMEM_SOAK_SECONDS (600)
# with RSS sampled, and the chaos tests at HAKMEM_TEST_SCALE (4).  The soak
# binary's name does not end in -release/-debug, so run_tests.sh skips it.
$(B)/tests/soak: tests/soak.c tests/test_util.h $(B)/libhakmem.so $(B)/libhakmem.so.$(VERSION_MAJOR)
	@mkdir -p $(B)/tests
	$(CC) $(TEST_CFLAGS) -o $@ $< -L$(B) -Wl,-rpath,'$$ORIGIN/..' -lhakmem -lpthread

# Evidence for README "Signal handlers": what a handler that allocates while
# the thread it interrupted is inside malloc/free does (not supported).
$(B)/tests/signal_reentry: tests/signal_reentry.c tests/test_util.h $(B)/libhakmem.so $(B)/libhakmem.so.$(VERSION_MAJOR)
	@mkdir -p $(B)/tests
	$(CC) $(TEST_CFLAGS) -o $@ $< -L$(B) -Wl,-rpath,'$$ORIGIN/..' -lhakmem -lpthread

test-long: $(B)/tests/soak $(B)/tests/test_chaos-release $(B)/tests/test_chaos-debug $(B)/tests/test_chaos-hardened
	sh tests/run_long.sh $(B)

# ------------------------------------------------------------------- fuzzing
# make fuzz [FUZZ_SECONDS=60] [FUZZ_MAX_LEN=2048]: libFuzzer on the hak_ API
# (tests/fuzz/fuzz_ops.c says what it does and checks), against two clang
# flavors of the allocator that export only the hak_ names (HAKMEM_OVERRIDE=0:
# libFuzzer and ASan keep glibc's malloc) and carry coverage instrumentation
# (-fsanitize=fuzzer-no-link) and UBSan (-fsanitize=undefined, aborting:
# shifts, overflows and misaligned accesses in the size and alignment
# arithmetic): fuzz (release flags) and fuzz-debug (debug flags: free-list
# validation and the allocation bitmap are on).  The harness is linked with
# -fsanitize=fuzzer,address,undefined: ASan checks the harness's own
# accesses; hakmem's blocks come from mmap, which ASan does not watch, so
# overflows between them are left to the harness's patterns and hak_check().  tests/fuzz/run_fuzz.sh first runs every input of
# tests/fuzz/regressions/ once through each binary, then fuzzes each for
# FUZZ_SECONDS from the seed corpus tests/fuzz/corpus/ (new inputs go to
# build/fuzz/corpus-<flavor>/, crashes to build/fuzz/crashes-<flavor>/) and
# prints "fuzz: N passed, N failed".
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_MAX_LEN ?= 2048
FUZZ_CFLAGS  := -std=gnu11 -g -O2 -Wall -Wextra -Iinclude -fno-omit-frame-pointer \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_LIB_FLAGS     := -DHAKMEM_OVERRIDE=0 -fsanitize=fuzzer-no-link,undefined -fno-sanitize-recover=undefined
FLAGS_fuzz         := $(FLAGS_release) $(FUZZ_LIB_FLAGS)
FLAGS_fuzz-debug   := $(FLAGS_debug) $(FUZZ_LIB_FLAGS)
SUFFIX_fuzz        := -fuzz
SUFFIX_fuzz-debug  := -fuzz-debug
CC_fuzz            := $(FUZZ_CC)
CC_fuzz-debug      := $(FUZZ_CC)
$(eval $(call FLAVOR_RULES,fuzz))
$(eval $(call FLAVOR_RULES,fuzz-debug))
FUZZ_BINS := $(B)/fuzz/fuzz_ops-release $(B)/fuzz/fuzz_ops-debug

$(B)/fuzz/fuzz_ops-release: tests/fuzz/fuzz_ops.c include/hakmem.h $(B)/libhakmem-fuzz.a
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(B)/libhakmem-fuzz.a -lpthread

$(B)/fuzz/fuzz_ops-debug: tests/fuzz/fuzz_ops.c include/hakmem.h $(B)/libhakmem-fuzz-debug.a
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(B)/libhakmem-fuzz-debug.a -lpthread

.PHONY: fuzz fuzz-build
fuzz-build: $(FUZZ_BINS)
fuzz: $(FUZZ_BINS)
	sh tests/fuzz/run_fuzz.sh $(B) $(FUZZ_SECONDS) $(FUZZ_MAX_LEN)

# ------------------------------------------------------------------- install
# Paths are substituted here, at install time, into the pkg-config file, the
# CMake package and the launcher, so that each names the directory it was
# installed for (PREFIX/LIBDIR, whatever DESTDIR stages it).
SIZEOF_VOID_P = $(shell echo __SIZEOF_POINTER__ | $(CC) -E -P - | tail -n 1)
SUBST = sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@SUFFIX@|$(SUFFIX)|g' \
	    -e 's|@VERSION@|$(VERSION)|g' -e 's|@VERSION_MAJOR@|$(VERSION_MAJOR)|g' \
	    -e 's|@SIZEOF_VOID_P@|$(SIZEOF_VOID_P)|g'
SONAME_LINK := libhakmem$(SUFFIX).so.$(VERSION_MAJOR)

install: lib
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR) \
	  $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3
	install -m 644 $(B)/libhakmem$(SUFFIX).so.$(VERSION) $(DESTDIR)$(LIBDIR)/
	ln -sf libhakmem$(SUFFIX).so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME_LINK)
	ln -sf libhakmem$(SUFFIX).so.$(VERSION) $(DESTDIR)$(LIBDIR)/libhakmem$(SUFFIX).so
	install -m 644 $(B)/libhakmem$(SUFFIX).a $(DESTDIR)$(LIBDIR)/
	install -m 644 include/hakmem.h $(DESTDIR)$(INCLUDEDIR)/
	$(SUBST) hakmem.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/hakmem$(SUFFIX).pc
	$(SUBST) tools/hakmem.in > $(DESTDIR)$(BINDIR)/hakmem
	chmod 755 $(DESTDIR)$(BINDIR)/hakmem
	install -m 644 man/hakmem.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 man/hakmem.3 $(DESTDIR)$(MANDIR)/man3/
ifeq ($(BUILD_FLAVOR),release)
	install -d $(DESTDIR)$(LIBDIR)/cmake/hakmem
	$(SUBST) cmake/hakmemConfig.cmake.in > $(DESTDIR)$(LIBDIR)/cmake/hakmem/hakmemConfig.cmake
	$(SUBST) cmake/hakmemConfigVersion.cmake.in \
	  > $(DESTDIR)$(LIBDIR)/cmake/hakmem/hakmemConfigVersion.cmake
endif

clean:
	rm -rf $(B)
