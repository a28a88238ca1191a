# ibnas: one Makefile. `make` builds build/libibnas.a, build/libibnas.so and build/ibnas; `make test` runs
# every test and ends with "N passed, N failed"; `make bench`; `make bench-tin`; `make demo`; `make DEBUG=1`;
# `make SANITIZE=1 test`; `make valgrind` (a short training job under memcheck); `make fuzz` (libFuzzer, FUZZ_SECONDS a target); `make install PREFIX=/usr/local DESTDIR=`
# and `make uninstall`.
# Sources are found by wildcard: a new file in a library folder is built without touching this file.

CC ?= cc
ifeq ($(CC),cc)
CC := gcc
endif

BUILD := build
OPT := -O2
ifeq ($(DEBUG),1)
BUILD := build/debug
OPT := -O0
endif
ifeq ($(SANITIZE),1)
BUILD := build/sanitize
OPT := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
endif
# The libFuzzer build (`make fuzz`): clang, every object instrumented for coverage, ASan and UBSan.
ifeq ($(FUZZ),1)
CC := clang
BUILD := build/fuzz
# (-Wno-pass-failed: at -O1 clang cannot always honour `omp simd`, which says nothing about the readers.)
OPT := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined \
       -Wno-pass-failed
endif

HDF5_CFLAGS := $(shell pkg-config --cflags hdf5-serial 2>/dev/null || pkg-config --cflags hdf5 2>/dev/null)
HDF5_LIBS := $(shell pkg-config --libs hdf5-serial 2>/dev/null || pkg-config --libs hdf5 2>/dev/null || echo -lhdf5)

# ONNX export (api/export.c): protobuf-c over the schema api/onnx/onnx.proto. protoc-c compiles it into the
# build folder: the generated code is not committed, so it always matches the installed libprotobuf-c (both
# Debian packages, libprotobuf-c-dev and protobuf-c-compiler, which tools/deps.sh installs).
PROTOC_C ?= protoc-c
PROTOBUF_C_CFLAGS := $(shell pkg-config --cflags libprotobuf-c 2>/dev/null)
PROTOBUF_C_LIBS := $(shell pkg-config --libs libprotobuf-c 2>/dev/null || echo -lprotobuf-c)
GEN := $(BUILD)/gen

# MPI (core/dist.c: data-parallel training and distributed search across processes, docs/SCALE.md): on when
# Open MPI's development files are there (libopenmpi-dev, which tools/deps.sh installs); `make MPI=0` builds
# without it, as does a machine without them: the library is then one process (-DIB_NO_MPI).
MPI ?= 1
ifeq ($(MPI),1)
MPI_PC := $(firstword $(foreach p,ompi-c mpi-c mpich,$(shell pkg-config --exists $(p) 2>/dev/null && echo $(p))))
endif
ifneq ($(MPI_PC),)
MPI_CFLAGS := $(shell pkg-config --cflags $(MPI_PC))
MPI_LIBS := $(shell pkg-config --libs $(MPI_PC))
else
MPI_CFLAGS := -DIB_NO_MPI
MPI_LIBS :=
endif

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CFLAGS := -std=c11 $(OPT) -g -fopenmp -D_GNU_SOURCE -I. -Iinclude -I$(GEN) $(HDF5_CFLAGS) $(PROTOBUF_C_CFLAGS) $(MPI_CFLAGS) $(WARN) $(EXTRA_CFLAGS)
# Library objects make both libibnas.a and libibnas.so: position-independent, and the .so exports only the
# public API (IBNAS_API in include/ibnas.h). With hidden visibility the kernels compile to the same machine
# code as gcc's default PIE objects (30 of 34 objects identical; the rest differ in TLS/GOT loads outside
# the hot loops), and `ibnas bench train` measured the same within noise.
LIB_CFLAGS := -fPIC -fvisibility=hidden
# Examples see the public header alone, so an internal include fails to compile.
EXAMPLE_CFLAGS := -std=c11 $(OPT) -g -Iinclude $(WARN) $(EXTRA_CFLAGS)
LDFLAGS := -fopenmp $(filter -fsanitize=%,$(OPT))
# OpenBLAS's OpenMP build: its GEMM threads are the same libgomp pool as our loops. The pthread build
# keeps a second pool spinning beside OpenMP's, and on 2 cores that made training 8x slower.
OPENBLAS_DIR := $(firstword $(wildcard /usr/lib/*/openblas-openmp))
ifneq ($(OPENBLAS_DIR),)
BLAS_LIBS := -L$(OPENBLAS_DIR) -Wl,-rpath,$(OPENBLAS_DIR) -lopenblas
else
BLAS_LIBS := -lopenblas
endif
LDLIBS := $(HDF5_LIBS) $(BLAS_LIBS) $(PROTOBUF_C_LIBS) $(MPI_LIBS) -ljansson -lpng -ljpeg -lm -lpthread

# The version comes from the public header; the soname carries the major version.
VERSION := $(shell sed -n 's/.*IBNAS_VERSION_STRING "\(.*\)"/\1/p' include/ibnas.h)
SONAME := libibnas.so.$(word 1,$(subst ., ,$(VERSION)))
SO_REAL := libibnas.so.$(VERSION)
SHARED := $(BUILD)/$(SO_REAL) $(BUILD)/$(SONAME) $(BUILD)/libibnas.so

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# What a static link of libibnas.a needs after it (ibnas.pc's Libs.private): the OpenMP OpenBLAS by path.
PC_LIBS_PRIVATE := $(LDLIBS) -lgomp

LIB_DIRS := core layers optim data search tasks api
LIB_SRC := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
ONNX_GEN_OBJ := $(BUILD)/obj/gen/onnx.pb-c.o
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(ONNX_GEN_OBJ)
CLI_SRC := $(wildcard cli/*.c)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_SUPPORT := $(filter-out tests/test_%.c,$(wildcard tests/*.c))
TEST_SUPPORT_OBJ := $(TEST_SUPPORT:%.c=$(BUILD)/obj/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
EXAMPLE_SRC := $(wildcard examples/*.c)
EXAMPLE_OBJ := $(EXAMPLE_SRC:%.c=$(BUILD)/obj/%.o)
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/%.c=$(BUILD)/examples/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(filter-out %/fuzz_common,$(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%))
FUZZ_SECONDS ?= 30

.PHONY: all deps test valgrind bench bench-tin demo clean tests examples refs install uninstall fuzz fuzz-run
all: $(BUILD)/libibnas.a $(SHARED) $(BUILD)/ibnas

deps:
	@bash tools/deps.sh

# Objects are rebuilt when the compile flags change: the stamp holds the flags of the last build.
FLAGS_STAMP := $(BUILD)/.flags
FLAGS_NOW := $(CC) $(CFLAGS) | $(LIB_CFLAGS) | $(EXAMPLE_CFLAGS)
$(shell mkdir -p $(BUILD) && \
        { [ "$$(cat $(FLAGS_STAMP) 2>/dev/null)" = '$(FLAGS_NOW)' ] || echo '$(FLAGS_NOW)' > $(FLAGS_STAMP); })

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB_OBJ): CFLAGS += $(LIB_CFLAGS)

$(GEN)/onnx.pb-c.c: api/onnx/onnx.proto
	@mkdir -p $(GEN)
	@command -v $(PROTOC_C) >/dev/null || { echo "protoc-c is missing: make deps (or apt-get install protobuf-c-compiler libprotobuf-c-dev)" >&2; exit 1; }
	$(PROTOC_C) --proto_path=api/onnx --c_out=$(GEN) $<
$(GEN)/onnx.pb-c.h: $(GEN)/onnx.pb-c.c
	@test -f $@ || { rm -f $<; $(MAKE) --no-print-directory $<; }
$(ONNX_GEN_OBJ): $(GEN)/onnx.pb-c.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@
# Every object may include the generated header: it exists before any compiles (order only).
$(LIB_OBJ) $(CLI_OBJ) $(TEST_SUPPORT_OBJ) $(TEST_SRC:%.c=$(BUILD)/obj/%.o): | $(GEN)/onnx.pb-c.h

$(EXAMPLE_OBJ): $(BUILD)/obj/examples/%.o: examples/%.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(EXAMPLE_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libibnas.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/$(SO_REAL): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined $(LDFLAGS) $^ $(LDLIBS) -o $@
$(BUILD)/$(SONAME): $(BUILD)/$(SO_REAL)
	ln -sf $(SO_REAL) $@
$(BUILD)/libibnas.so: $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $@

$(BUILD)/ibnas: $(CLI_OBJ) $(BUILD)/libibnas.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_SUPPORT_OBJ) $(BUILD)/libibnas.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(BUILD)/libibnas.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/examples/%: $(BUILD)/obj/examples/%.o $(BUILD)/libibnas.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/fuzz/%: $(BUILD)/obj/tests/fuzz/%.o $(BUILD)/obj/tests/fuzz/fuzz_common.o $(BUILD)/libibnas.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer $^ $(LDLIBS) -o $@

tests: $(TEST_BIN) $(BUILD)/ibnas
examples: $(EXAMPLE_BIN)

# The suite: every tests/test_* binary, then the CLI checks; tools/run_tests.sh prints the total.
# tests/test_install.sh installs this build (the same SANITIZE/DEBUG, passed down in MAKEFLAGS) into a
# temporary root and builds an example against it with pkg-config.
test: deps
	@$(MAKE) --no-print-directory -j2 all tests examples
	@IBNAS=$(BUILD)/ibnas IBNAS_LINK_FLAGS="$(filter -fsanitize=%,$(OPT))" CC="$(CC)" \
	    bash tools/run_tests.sh $(TEST_BIN) tests/test_install.sh tests/test_report.sh tests/test_examples.sh tests/test_cli_doc.sh

# A short training job (train, resume, eval) under valgrind's memcheck: no memory error, no definite leak.
valgrind:
	@bash tools/deps.sh ci
	@$(MAKE) --no-print-directory -j2 all
	@bash tools/run_valgrind.sh $(BUILD)

# Each reader's libFuzzer target for FUZZ_SECONDS (default 30) seconds, one after another (clang and its
# fuzzer runtime: tools/deps.sh fuzz installs them). Findings land in build/fuzz/runs/<target>/findings/.
fuzz:
	@bash tools/deps.sh fuzz
	@$(MAKE) --no-print-directory FUZZ=1 fuzz-run
fuzz-run:
	@$(MAKE) --no-print-directory -j2 FUZZ=1 $(FUZZ_BIN)
	@bash tools/run_fuzz.sh $(BUILD) $(FUZZ_SECONDS) $(FUZZ_BIN)

# Installs the command, both libraries, the public header and ibnas.pc; DESTDIR stages it elsewhere.
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 755 $(BUILD)/ibnas $(DESTDIR)$(BINDIR)/ibnas
	install -m 644 $(BUILD)/libibnas.a $(DESTDIR)$(LIBDIR)/libibnas.a
	install -m 755 $(BUILD)/$(SO_REAL) $(DESTDIR)$(LIBDIR)/$(SO_REAL)
	ln -sf $(SO_REAL) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libibnas.so
	install -m 644 include/ibnas.h $(DESTDIR)$(INCLUDEDIR)/ibnas.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))|' \
	    -e 's|@INCLUDEDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@LIBS_PRIVATE@|$(PC_LIBS_PRIVATE)|' tools/ibnas.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/ibnas.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/ibnas.pc

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/ibnas $(DESTDIR)$(LIBDIR)/libibnas.a $(DESTDIR)$(LIBDIR)/$(SO_REAL) \
	    $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libibnas.so $(DESTDIR)$(INCLUDEDIR)/ibnas.h \
	    $(DESTDIR)$(PKGCONFIGDIR)/ibnas.pc

bench:
	@bash tools/deps.sh bench
	@$(MAKE) --no-print-directory -j2 all $(BENCH_BIN)
	@bash tools/run_bench.sh $(BUILD)

# Issue 5's parity run: the Tiny ImageNet recipe by ibnas, then by PyTorch (about 1.5 h on 2 cores).
bench-tin:
	@bash tools/deps.sh bench
	@$(MAKE) --no-print-directory -j2 all
	@bash bench/tinyimagenet.sh $(BUILD)

demo:
	@bash tools/deps.sh demo
	@$(MAKE) --no-print-directory -j2 all
	@bash tools/demo.sh $(BUILD)

# Regenerates the committed PyTorch reference files (needs python3-torch and python3-h5py).
refs:
	@for s in tests/ref/*.py; do case $$s in */common.py) continue;; esac; echo "refs: $$s"; /usr/bin/python3 $$s || exit 1; done

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
