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
NVCC := $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
HAVE_CUDA := $(if $(NVCC),yes,no)
HAVE_OPENBLAS := $(shell test -e /usr/include/x86_64-linux-gnu/cblas.h -o -e /usr/include/cblas.h && echo yes || echo no)
CFLAGS += -DTEMPO_HAVE_MPI=$(if $(filter yes,$(HAVE_MPI)),1,0) -DTEMPO_HAVE_CUDA=$(if $(filter yes,$(HAVE_CUDA)),1,0)

LIB_SRC := $(sort $(wildcard src/*/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(O)/%.o)
LIB := $(O)/libtempo.a
PROGRAMS := $(O)/tempo
PROG_SRC := $(sort $(wildcard programs/tempo*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TESTS := $(TEST_SRC:tests/%.c=$(O)/tests/%)
SCRIPT_TESTS := $(sort $(wildcard tests/test_*.sh))
BENCH_SRC := $(sort $(wildcard bench/bench_*.c))
BENCHES := $(BENCH_SRC:bench/%.c=$(O)/bench/%)

.PHONY: all features run test check bench install uninstall clean
all: features $(PROGRAMS) $(TESTS) $(BENCHES)

features:
	@echo "tempo $(VERSION): OpenBLAS=$(HAVE_OPENBLAS) MPI=$(HAVE_MPI) CUDA=$(HAVE_CUDA) SANITIZE=$(if $(SANITIZE),$(SANITIZE),off) build=$(O)"

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(O)/tempo: $(PROG_SRC:%.c=$(O)/%.o) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LIB) $(LDLIBS)

$(O)/tests/%: $(O)/tests/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS) -lcmocka

$(O)/bench/%: $(O)/bench/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

# The main job: train the default model on Fashion-MNIST with the built-in defaults.
run: all
	$(O)/tempo train $(ARGS)

test: all
	@TEMPO_BUILD=$(O) scripts/run-tests.sh $(TESTS) $(SCRIPT_TESTS)

check:
	$(MAKE) SANITIZE=address,undefined test

bench: all
	@TEMPO_BUILD=$(O) scripts/run-bench.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/tempo \
	  $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(PROGRAMS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(LIB) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/tempo/*.h $(DESTDIR)$(PREFIX)/include/tempo/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' docs/tempo.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/tempo.pc
	install -m 644 docs/tempo.1 $(DESTDIR)$(PREFIX)/share/man/man1/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/tempo $(DESTDIR)$(PREFIX)/lib/libtempo.a \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig/tempo.pc $(DESTDIR)$(PREFIX)/share/man/man1/tempo.1
	rm -rf $(DESTDIR)$(PREFIX)/include/tempo

clean:
	rm -rf build build-san

-include $(LIB_OBJ:.o=.d) $(TESTS:%=%.d)
