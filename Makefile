# ibnas: one Makefile. `make` builds build/libibnas.a and build/ibnas; `make test` runs every test and
# ends with "N passed, N failed"; `make bench`; `make demo`; `make DEBUG=1`; `make SANITIZE=1 test`.
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

HDF5_CFLAGS := $(shell pkg-config --cflags hdf5-serial 2>/dev/null || pkg-config --cflags hdf5 2>/dev/null)
HDF5_LIBS := $(shell pkg-config --libs hdf5-serial 2>/dev/null || pkg-config --libs hdf5 2>/dev/null || echo -lhdf5)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CFLAGS := -std=c11 $(OPT) -g -fopenmp -D_GNU_SOURCE -I. $(HDF5_CFLAGS) $(WARN) $(EXTRA_CFLAGS)
LDFLAGS := -fopenmp $(filter -fsanitize=%,$(OPT))
# OpenBLAS's OpenMP build: its GEMM threads are the same libgomp pool as our loops. The pthread build
# keeps a second pool spinning beside OpenMP's, and on 2 cores that made training 8x slower.
OPENBLAS_DIR := $(firstword $(wildcard /usr/lib/*/openblas-openmp))
ifneq ($(OPENBLAS_DIR),)
BLAS_LIBS := -L$(OPENBLAS_DIR) -Wl,-rpath,$(OPENBLAS_DIR) -lopenblas
else
BLAS_LIBS := -lopenblas
endif
LDLIBS := $(HDF5_LIBS) $(BLAS_LIBS) -ljansson -lpng -ljpeg -lm -lpthread

LIB_DIRS := core layers optim data search tasks
LIB_SRC := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_SRC := $(wildcard cli/*.c)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_SUPPORT := $(filter-out tests/test_%.c,$(wildcard tests/*.c))
TEST_SUPPORT_OBJ := $(TEST_SUPPORT:%.c=$(BUILD)/obj/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
EXAMPLE_SRC := $(wildcard examples/*.c)
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/%.c=$(BUILD)/examples/%)

.PHONY: all deps test bench demo clean tests examples refs
all: $(BUILD)/libibnas.a $(BUILD)/ibnas

deps:
	@bash tools/deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libibnas.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^

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

tests: $(TEST_BIN) $(BUILD)/ibnas
examples: $(EXAMPLE_BIN)

# The suite: every tests/test_* binary, then the CLI checks; tools/run_tests.sh prints the total.
test: deps
	@$(MAKE) --no-print-directory -j2 tests examples
	@IBNAS=$(BUILD)/ibnas bash tools/run_tests.sh $(TEST_BIN)

bench: deps
	@$(MAKE) --no-print-directory -j2 all $(BENCH_BIN)
	@bash tools/run_bench.sh $(BUILD)

demo: deps
	@$(MAKE) --no-print-directory -j2 all
	@bash tools/demo.sh $(BUILD)

# Regenerates the committed PyTorch reference files (needs python3-torch and python3-h5py).
refs:
	@for s in tests/ref/*.py; do case $$s in */common.py) continue;; esac; echo "refs: $$s"; /usr/bin/python3 $$s || exit 1; done

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
