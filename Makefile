# Tempo - one build system: make [all|run|test|check|bench|install|uninstall|clean]
# Variables: CC, PREFIX (/usr/local), DESTDIR, SANITIZE=address,undefined, O (build dir).
# The build first runs scripts/setup-deps.sh, which installs missing Debian packages
# (quiet when all are present; TEMPO_SKIP_SETUP=1 skips it).

ifneq ($(TEMPO_SKIP_SETUP),1)
SETUP_RC := $(shell scripts/setup-deps.sh >&2; echo $$?)
ifneq ($(SETUP_RC),0)
$(error scripts/setup-deps.sh failed: install the packages it names, or set TEMPO_SKIP_SETUP=1)
endif
endif

VERSION := 0.1.0
# `make` alone builds everything, whatever rules the optional features add before `all:`
.DEFAULT_GOAL := all
PREFIX ?= /usr/local
CC ?= gcc
SANITIZE ?=
O ?= $(if $(SANITIZE),build-san,build)

WARN := -Wall -Wextra -Werror -Wno-unused-parameter -Wvla -Wformat=2
CFLAGS ?= -O2 -g
CFLAGS += -std=c17 -D_GNU_SOURCE -fPIC $(WARN) -Iinclude -Isrc -DTEMPO_VERSION='"$(VERSION)"' -pthread
LDLIBS := -lopenblas -lsodium -lz -lm -pthread
ifneq ($(SANITIZE),)
CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
endif

# Optional features, reported at build time.
HAVE_MPI := $(shell command -v mpicc >/dev/null 2>&1 && echo yes || echo no)
# CUDA needs nvcc AND linkable libcublas/libcudart; scripts/find-cuda.sh finds both (nvcc may be a wrapper).
CUDA_FOUND := $(shell scripts/find-cuda.sh)
NVCC := $(word 1,$(CUDA_FOUND))
CUDA_LIBDIR := $(word 2,$(CUDA_FOUND))
HAVE_CUDA := $(if $(CUDA_LIBDIR),yes,no)
HAVE_OPENBLAS := $(shell test -e /usr/include/x86_64-linux-gnu/cblas.h -o -e /usr/include/cblas.h && echo yes || echo no)
CFLAGS += -DTEMPO_HAVE_MPI=$(if $(filter yes,$(HAVE_MPI)),1,0) -DTEMPO_HAVE_CUDA=$(if $(filter yes,$(HAVE_CUDA)),1,0)
# oneDNN (libdnnl-dev): src/core/gemm.c sends large products to its AVX-512 dnnl_sgemm (TEMPO_GEMM overrides).
HAVE_DNNL := $(shell test -e /usr/include/dnnl.h && echo yes || echo no)
CFLAGS += -DTEMPO_HAVE_DNNL=$(if $(filter yes,$(HAVE_DNNL)),1,0)
LDLIBS += $(if $(filter yes,$(HAVE_DNNL)),-ldnnl -lgomp)

# src/mpi (MPI transport) and src/cuda (CUDA backend) stay out of libtempo.a: only the two
# programs (and the CUDA tests) link them, so the library and its tests need neither.
LIB_SRC := $(sort $(filter-out src/mpi/%,$(wildcard src/*/*.c)))
LIB_OBJ := $(LIB_SRC:%.c=$(O)/%.o)
# The built-in models' network files, compiled in (tempo_net_builtin_text) and installed.
NETS := $(sort $(wildcard nets/*.net))
LIB_OBJ += $(O)/gen/nets_builtin.o
LIB := $(O)/libtempo.a
# The shared library for embedding (pkg-config tempo): the same -fPIC objects, soname libtempo.so.MAJOR.
SOMAJOR := $(word 1,$(subst ., ,$(VERSION)))
SONAME := libtempo.so.$(SOMAJOR)
SHLIB := $(O)/libtempo.so.$(VERSION)
# The worker program's archive: the wire module (protocol, envelope), worker core, CPU backend (the shared
# GEMM), status/alloc.
# No model, optimizer, dataset or key code (tests/test_worker_program.sh checks with nm).
# src/worker/fault.c (test-only fault injection) is in libtempo.a and the test-only worker program only.
WORKER_LIB_SRC := $(sort $(wildcard src/wire/*.c) $(filter-out src/worker/fault.c,$(wildcard src/worker/*.c))) \
  src/core/status.c src/core/common.c src/core/gemm.c src/core/gemm16.c src/core/parallel.c
WORKER_LIB := $(O)/libtempo_worker.a
# TESTS ONLY: the worker program again with --fault (tempo/worker_fault.h), for the MPI fault tests.
FAULTY_WORKER := $(O)/tests/tempo-worker-faulty
PROGRAMS := $(O)/tempo $(O)/tempo-owner $(O)/tempo-attack $(O)/tempo-worker
# The master `tempo` (the enclave's binary: deploy/gramine) holds train/eval only; the owner's tools
# (tempo-owner) and the attacks (tempo-attack) are separate programs, none of whose code the master
# links (tests/test_enclave_binary.sh checks with nm). programs/cli_common.c is their shared CLI code.
CLI_OBJ := $(O)/programs/cli_common.o
MAN_PAGES := docs/tempo.1 docs/tempo-owner.1 docs/tempo-attack.1
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TESTS := $(TEST_SRC:tests/%.c=$(O)/tests/%)

ifeq ($(HAVE_MPI),yes)
MPI_CFLAGS := $(shell mpicc --showme:compile)
MPI_LIBS := $(shell mpicc --showme:link)
# MPI launches and connects the ranks; the data travels over TCP streams (src/mpi/net.h)
MASTER_MPI_OBJ := $(O)/src/mpi/master_mpi.o $(O)/src/mpi/net.o
WORKER_MPI_OBJ := $(O)/src/mpi/worker_mpi.o $(O)/src/mpi/net.o
$(sort $(MASTER_MPI_OBJ) $(WORKER_MPI_OBJ)) $(O)/programs/tempo.o $(O)/programs/tempo_worker.o: CFLAGS += $(MPI_CFLAGS)
$(O)/tests/tempo_worker_faulty.o: CFLAGS += $(MPI_CFLAGS)
endif

ifeq ($(HAVE_CUDA),yes)
NVCCFLAGS := -O2 -std=c++17 -Iinclude -Isrc -Xcompiler -fPIC,-Wall \
  -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
CUDA_OBJ := $(patsubst %.cu,$(O)/%.o,$(sort $(wildcard src/cuda/*.cu)))
CUDA_LIBS := -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcublas -lcudart -lstdc++
$(O)/src/cuda/%.o: src/cuda/%.cu $(wildcard src/cuda/*.h) include/tempo/worker.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@
# the CUDA tests link the backend too
$(O)/tests/test_cuda: $(CUDA_OBJ)
$(O)/tests/test_cuda: EXTRA_LIBS = $(CUDA_OBJ)
CUDA_RT_test_cuda = $(CUDA_LIBS)
endif
SCRIPT_TESTS := $(sort $(wildcard tests/test_*.sh))
BENCH_SRC := $(sort $(wildcard bench/bench_*.c))
BENCHES := $(BENCH_SRC:bench/%.c=$(O)/bench/%)

.PHONY: all features run test check bench install uninstall clean fuzz
# Keep intermediate objects (test and bench .o files): no "rm" lines after the test summary.
.SECONDARY:
all: features $(PROGRAMS) $(SHLIB) $(TESTS) $(BENCHES)

features:
	@echo "tempo $(VERSION): OpenBLAS=$(HAVE_OPENBLAS) oneDNN=$(HAVE_DNNL) MPI=$(HAVE_MPI) CUDA=$(HAVE_CUDA) SANITIZE=$(if $(SANITIZE),$(SANITIZE),off) build=$(O)"

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(O)/gen/nets_builtin.c: $(NETS) scripts/embed-nets.sh
	@mkdir -p $(dir $@)
	scripts/embed-nets.sh $@ $(NETS)
$(O)/gen/nets_builtin.o: $(O)/gen/nets_builtin.c include/tempo/netfile.h
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(SHLIB): $(LIB_OBJ)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined -o $@ $^ $(LDLIBS)

# The bridge's library with the MPI transport (include/tempo/bridge.h, tempo_bridge_create_mpi):
# libtempo's objects, the master side of src/mpi and src/mpi/bridge_mpi.c, for a Python master under
# mpirun (python/tempo_torch, Engine(transport="mpi")). libtempo.so itself stays MPI-free.
ifeq ($(HAVE_MPI),yes)
MPI_SHLIB := $(O)/libtempo_mpi.so
all: $(MPI_SHLIB)
$(O)/src/mpi/bridge_mpi.o: CFLAGS += $(MPI_CFLAGS)
$(MPI_SHLIB): $(LIB_OBJ) $(MASTER_MPI_OBJ) $(O)/src/mpi/bridge_mpi.o
	$(CC) $(LDFLAGS) -shared -Wl,--no-undefined -o $@ $^ $(LDLIBS) $(MPI_LIBS)
endif

$(O)/tempo: $(O)/programs/tempo.o $(CLI_OBJ) $(MASTER_MPI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LIB) $(LDLIBS) $(MPI_LIBS)

$(O)/tempo-owner $(O)/tempo-attack: $(O)/tempo-%: $(O)/programs/tempo_%.o $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LIB) $(LDLIBS)

$(WORKER_LIB): $(WORKER_LIB_SRC:%.c=$(O)/%.o)
	@rm -f $@
	ar rcs $@ $^

$(O)/tempo-worker: $(O)/programs/tempo_worker.o $(WORKER_MPI_OBJ) $(CUDA_OBJ) $(WORKER_LIB)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(WORKER_LIB) -lopenblas $(if $(filter yes,$(HAVE_DNNL)),-ldnnl -lgomp) -lsodium -lm -pthread $(MPI_LIBS) $(CUDA_LIBS)

all: $(FAULTY_WORKER)
$(O)/tests/tempo_worker_faulty.o: programs/tempo_worker.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DTEMPO_WORKER_FAULTS=1 -MMD -MP -c $< -o $@
$(FAULTY_WORKER): $(O)/tests/tempo_worker_faulty.o $(O)/src/worker/fault.o $(WORKER_MPI_OBJ) $(CUDA_OBJ) $(WORKER_LIB)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(WORKER_LIB) -lopenblas $(if $(filter yes,$(HAVE_DNNL)),-ldnnl -lgomp) -lsodium -lm -pthread $(MPI_LIBS) $(CUDA_LIBS)

$(O)/tests/%: $(O)/tests/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $< $(EXTRA_LIBS) $(LIB) $(LDLIBS) $(CUDA_RT_$(notdir $@)) -lcmocka

# TESTS ONLY: test_alloc_fail sends every allocation of the library (libtempo.a) through the
# counting, failing allocator tests/alloc_hook.c; no other binary is linked with it.
ALLOC_WRAP := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=posix_memalign,--wrap=aligned_alloc \
  -Wl,--wrap=strdup,--wrap=free
$(O)/tests/test_alloc_fail: $(O)/tests/alloc_hook.o
$(O)/tests/test_alloc_fail: EXTRA_LIBS = $(O)/tests/alloc_hook.o $(ALLOC_WRAP)

$(O)/bench/%: $(O)/bench/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

# bench_scaling runs as the master under mpirun too
$(O)/bench/bench_scaling.o: CFLAGS += $(MPI_CFLAGS)
$(O)/bench/bench_scaling: $(O)/bench/bench_scaling.o $(MASTER_MPI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LIB) $(LDLIBS) $(MPI_LIBS)

# The main job: train the default model on Fashion-MNIST with the built-in defaults.
run: all
	$(O)/tempo train $(ARGS)

test: all
	@TEMPO_BUILD=$(O) scripts/run-tests.sh $(TESTS) $(SCRIPT_TESTS)

# --no-print-directory: the suite's summary stays the last line (.ci/run runs this after make test)
check:
	@$(MAKE) --no-print-directory SANITIZE=address,undefined test

bench: all
	@TEMPO_BUILD=$(O) scripts/run-bench.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/tempo \
	  $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(PROGRAMS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(LIB) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(SHLIB) $(DESTDIR)$(PREFIX)/lib/
	ln -sf $(notdir $(SHLIB)) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libtempo.so
	install -m 644 include/tempo/*.h $(DESTDIR)$(PREFIX)/include/tempo/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' \
	  -e 's|@LIBS_PRIVATE@|$(filter-out -lopenblas -lsodium -lz,$(LDLIBS))|g' docs/tempo.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/tempo.pc
	install -m 644 $(MAN_PAGES) $(DESTDIR)$(PREFIX)/share/man/man1/
	install -d $(DESTDIR)$(PREFIX)/share/tempo/nets/examples
	install -m 644 $(NETS) $(DESTDIR)$(PREFIX)/share/tempo/nets/
	install -m 644 $(wildcard nets/examples/*.net) $(DESTDIR)$(PREFIX)/share/tempo/nets/examples/

uninstall:
	rm -f $(PROGRAMS:$(O)/%=$(DESTDIR)$(PREFIX)/bin/%) $(DESTDIR)$(PREFIX)/lib/libtempo.a \
	  $(DESTDIR)$(PREFIX)/lib/$(notdir $(SHLIB)) $(DESTDIR)$(PREFIX)/lib/$(SONAME) $(DESTDIR)$(PREFIX)/lib/libtempo.so \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig/tempo.pc $(MAN_PAGES:docs/%=$(DESTDIR)$(PREFIX)/share/man/man1/%)
	rm -rf $(DESTDIR)$(PREFIX)/include/tempo $(DESTDIR)$(PREFIX)/share/tempo/nets

# libFuzzer targets (clang): the worker's and the master's message decoders.
# scripts/fuzz.sh SECONDS builds and runs them; tests/test_fuzz_replay.c replays the corpus.
FUZZ_CC ?= clang
FUZZ_SRC := src/wire/protocol.c src/wire/envelope.c src/wire/bf16.c src/worker/worker.c src/worker/backend_cpu.c src/core/status.c src/core/common.c \
  src/core/gemm.c src/core/gemm16.c src/core/parallel.c
fuzz: $(O)/fuzz/fuzz_worker $(O)/fuzz/fuzz_master $(O)/fuzz/fuzz_netfile
# the network-file parser: it links alone
FUZZ_NET_SRC := src/models/netfile.c src/models/netfile_shape.c src/core/status.c src/io/fileio.c
$(O)/fuzz/fuzz_netfile: tests/fuzz/fuzz_netfile.c $(FUZZ_NET_SRC) include/tempo/netfile.h src/models/netfile_shape.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -g -O1 -std=c17 -D_GNU_SOURCE -Iinclude -Isrc -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=undefined -o $@ $< $(FUZZ_NET_SRC)
$(O)/fuzz/%: tests/fuzz/%.c $(FUZZ_SRC) include/tempo/protocol.h include/tempo/worker.h include/tempo/envelope.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -g -O1 -std=c17 -D_GNU_SOURCE -Iinclude -Isrc -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=undefined -o $@ $< $(FUZZ_SRC) -lopenblas -lsodium -lm -pthread

clean:
	rm -rf build build-san

-include $(LIB_OBJ:.o=.d) $(TESTS:%=%.d) $(O)/programs/tempo.d $(O)/programs/tempo_worker.d $(O)/src/mpi/master_mpi.d $(O)/src/mpi/worker_mpi.d $(O)/src/mpi/net.d $(O)/src/mpi/bridge_mpi.d
-include $(O)/tests/tempo_worker_faulty.d $(O)/tests/alloc_hook.d
-include $(O)/programs/tempo_owner.d $(O)/programs/tempo_attack.d $(O)/programs/cli_common.d
-include $(BENCHES:%=%.d)
