# duplex: developer entry point. `make` builds build/duplex/core.so.
#
# LUA names the interpreter to build and test for: lua5.4 (the default),
# lua5.3, lua5.2, lua5.1 or luajit. Its headers come from pkg-config (or the
# usual include directory; LUA_INCDIR overrides), and every version but 5.4
# builds into a directory of its own, build/$(LUA).
LUA         ?= lua5.4
LUA_PKG      = $(if $(filter luajit,$(LUA)),luajit,$(LUA))
LUA_INCDIR  ?= $(or $(patsubst -I%,%,$(firstword $(shell pkg-config --cflags-only-I $(LUA_PKG) 2>/dev/null))),\
                   $(if $(filter luajit,$(LUA)),/usr/include/luajit-2.1,/usr/include/$(LUA)))
BUILD        = $(if $(filter lua5.4,$(LUA)),build,build/$(LUA))
# The Debian packages of each interpreter and its headers.
LUA_DEBS     = $(if $(filter luajit,$(LUA)),luajit2 libluajit2-5.1-dev,$(if $(filter lua5.1,$(LUA)),lua5.1 liblua5.1-0-dev,$(LUA) lib$(LUA)-dev))
# Specs that cannot hold on a version are tagged: on PUC 5.1 a task cannot
# wait inside pcall, a metamethod or a for-in iterator; <close> is 5.4's.
LUA_SKIP     = $(if $(filter lua5.1,$(LUA)),yields_in_pcall)
CC          ?= cc
CFLAGS_EXTRA ?=
WARN   = -Wall -Wextra -Wshadow -Wundef -Wwrite-strings -Wmissing-prototypes -Wstrict-prototypes
CFLAGS = -std=c99 -O2 -g -fPIC -fvisibility=hidden $(WARN) -I$(LUA_INCDIR) $(TLS_CFLAGS) $(CFLAGS_EXTRA)
LDFLAGS_SO = -shared -pthread -ldl

# TLS is on when OpenSSL 3's headers are there (libssl-dev); TLS=0 builds
# without it (duplex.tls is then nil). Deprecated OpenSSL calls are errors.
TLS ?= $(if $(wildcard /usr/include/openssl/ssl.h),1,0)
ifeq ($(TLS),1)
TLS_CFLAGS = -DDX_TLS -DOPENSSL_API_COMPAT=30000 -DOPENSSL_NO_DEPRECATED
TLS_LIBS   = -lssl -lcrypto
TLS_SRCS   =
else
TLS_CFLAGS =
TLS_LIBS   =
TLS_SRCS   = csrc/dx_tls.c
endif

# dx_loop.c includes its backend (dx_loop_epoll.c or dx_loop_poll.c): the
# backends are prerequisites, not sources of their own.
BACKENDS  = $(wildcard csrc/dx_loop_*.c)
SRCS      = $(filter-out $(BACKENDS) $(TLS_SRCS),$(wildcard csrc/*.c))
CORE_SRCS = $(filter-out csrc/dx_tls.c,$(filter csrc/dx_%.c,$(SRCS)))
HDRS      = $(wildcard csrc/*.h)
OUT       = $(BUILD)/duplex/core.so
# Child processes of the specs run the interpreter under test, with its
# build and test shims (make asan and the like set DUPLEX_CPATH themselves).
export DUPLEX_LUA = $(LUA)
export DUPLEX_SHIMS = $(BUILD)/shim
ifneq ($(BUILD),build)
export DUPLEX_CPATH ?= ./$(BUILD)/?.so
endif
BUSTED    = busted --lua=$(LUA) $(if $(LUA_SKIP),--exclude-tags=$(LUA_SKIP)) $(BUSTED_FLAGS)
FUZZ_SECONDS ?= 60

.PHONY: all shims check-layers test test-debug check-rockspec check-version fuzz-tls fuzz-proxy test-signalfd test-core test-core-asan test-core-memcheck check-tiers test-poll test-shortio demo asan memcheck fuzz bench clean deps deps-tools

all: $(OUT)

$(OUT): $(SRCS) $(HDRS) $(BACKENDS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS_SO) -o $@ $(SRCS) $(TLS_LIBS)

# Install what is missing on Debian (as root), or say the exact command.
DEPS_PKGS = lua5.4 liblua5.4-dev $(LUA_DEBS) pkg-config lua-busted luarocks python3 netcat-openbsd socat libssl-dev openssl curl \
            lua-socket lua-copas lua-coxpcall lua-sec
deps:
	@command -v dpkg-query >/dev/null || exit 0; \
	missing=""; for p in $(DEPS_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  else \
	    echo "missing packages; run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

# What memcheck and fuzz need besides.
DEPS_TOOLS = valgrind clang libclang-rt-dev
deps-tools:
	@$(MAKE) -s deps DEPS_PKGS="$(DEPS_TOOLS)"

test: deps
	$(MAKE) all shims check-tiers check-layers check-rockspec check-version test-core
	$(BUSTED) --cpath=./$(BUILD)/?.so -o utfTerminal spec

# The test shims (spec/shim/*.c): libraries the specs preload into child
# processes (lfork: a Lua module a child loads). Built here, never by a
# spec: spec/child_helpers.lua's ch.shim fails clearly when one is missing.
SHIMS = $(patsubst spec/shim/%.c,$(BUILD)/shim/%.so,$(wildcard spec/shim/*.c))
$(BUILD)/shim/%.so: spec/shim/%.c Makefile
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -O2 -g -fPIC $(WARN) -I$(LUA_INCDIR) $(CFLAGS_EXTRA) -shared -o $@ $< -ldl
shims: $(SHIMS)

# The rockspec builds what the Makefile builds: every csrc/*.c but the
# backends dx_loop.c includes, and installs every lua/duplex/*.lua.
check-rockspec:
	@listed=$$(grep -o -e 'csrc/[a-z_]*\.c' -e 'lua/duplex/[a-z_]*\.lua' rockspec/duplex-scm-1.rockspec | sort); \
	built=$$(ls csrc/*.c lua/duplex/*.lua | grep -v -e dx_loop_epoll -e dx_loop_poll | sort); \
	if [ "$$listed" = "$$built" ]; then echo "rockspec: every source and Lua module listed"; \
	else echo "the rockspec's files differ from csrc/*.c and lua/duplex/*.lua:"; mkdir -p build; echo "$$listed" > build/.rs; \
	  echo "$$built" | diff build/.rs - ; exit 1; fi

# The version is written once, as LX_VERSION in csrc/lduplex.h (the module's
# _VERSION is "duplex " LX_VERSION). Every "duplex X.Y.Z" elsewhere, the
# newest release in CHANGELOG.md and any release rockspec (named
# duplex-X.Y.Z-N.rockspec, beside the scm one) must say the same.
VERSION = $(shell sed -n 's/^.define LX_VERSION "\(.*\)"$$/\1/p' csrc/lduplex.h)
check-version:
	@v='$(VERSION)'; bad=0; \
	if [ -z "$$v" ]; then echo "csrc/lduplex.h defines no LX_VERSION"; exit 1; fi; \
	others=$$(grep -rnoE 'duplex [0-9]+\.[0-9]+\.[0-9]+' README.md lua spec examples csrc | grep -vF "duplex $$v"); \
	if [ -n "$$others" ]; then echo "another version than $$v:"; echo "$$others"; bad=1; fi; \
	grep -qF '"duplex '"$$v"'"' README.md || { echo "README.md does not give _VERSION as \"duplex $$v\""; bad=1; }; \
	newest=$$(sed -nE 's/^## \[([0-9][^]]*)\].*/\1/p' CHANGELOG.md | head -n 1); \
	if [ "$$newest" != "$$v" ]; then echo "CHANGELOG.md's newest release is '$$newest', not $$v"; bad=1; fi; \
	for r in rockspec/duplex-[0-9]*.rockspec; do \
	  [ -e "$$r" ] || continue; \
	  case "$$r" in rockspec/duplex-$$v-[0-9]*.rockspec) ;; *) echo "$$r is not a rockspec of $$v"; bad=1; continue;; esac; \
	  grep -q "^version = \"$$v-[0-9]*\"" "$$r" || { echo "$$r: its version field is not $$v-N"; bad=1; }; \
	done; \
	if [ $$bad = 0 ]; then echo "version $$v: written once (csrc/lduplex.h), the rest agree"; else exit 1; fi

# The core compiles without Lua: no csrc/dx_* file may include a Lua header.
check-tiers:
	@if grep -l 'lua\.h\|lauxlib\.h\|lualib\.h\|luaconf\.h' csrc/dx_*; then \
	  echo "the files above are core (dx_*) files that include Lua headers"; exit 1; \
	else echo "core tier: no Lua headers in csrc/dx_*"; fi

# The binding in layers, lowest first: a file calls only into the files
# before it (lduplex.c, the entry, last); a call planted from the lowest
# into the highest must be refused (spec/core/check_layers.sh).
LAYERS = lcompat lxaux lsock ldrive lresolve lclient lread lwrite lforward ltls lconnect \
         lproxy lserver ludp ldgram lsched lwait lselect lsignal lproc lserve lduplex
check-layers:
	@bash spec/core/check_layers.sh "$(CC) $(CFLAGS)" $(LAYERS)

# The core's own unit test, without Lua, against both backends.
build/test_core: spec/core/test_core.c $(CORE_SRCS) $(HDRS) $(BACKENDS) Makefile
	@mkdir -p build
	$(CC) -std=c99 -O1 -g $(WARN) -Icsrc $(CFLAGS_EXTRA) -o $@ spec/core/test_core.c $(CORE_SRCS) -pthread
build/test_core_poll: spec/core/test_core.c $(CORE_SRCS) $(HDRS) $(BACKENDS) Makefile
	@mkdir -p build
	$(CC) -std=c99 -O1 -g $(WARN) -Icsrc -DDX_USE_POLL $(CFLAGS_EXTRA) -o $@ spec/core/test_core.c $(CORE_SRCS) -pthread
# The same with the loop's invariants asserted (-DDX_DEBUG: dx_loop_check).
build/test_core_debug: spec/core/test_core.c $(CORE_SRCS) $(HDRS) $(BACKENDS) Makefile
	@mkdir -p build
	$(CC) -std=c99 -O1 -g $(WARN) -Icsrc -DDX_DEBUG $(CFLAGS_EXTRA) -o $@ spec/core/test_core.c $(CORE_SRCS) -pthread
build/test_core_debug_poll: spec/core/test_core.c $(CORE_SRCS) $(HDRS) $(BACKENDS) Makefile
	@mkdir -p build
	$(CC) -std=c99 -O1 -g $(WARN) -Icsrc -DDX_DEBUG -DDX_USE_POLL $(CFLAGS_EXTRA) -o $@ spec/core/test_core.c $(CORE_SRCS) -pthread
build/test_resolver: spec/core/test_resolver.c spec/shim/fakegai.c $(CORE_SRCS) $(HDRS) $(BACKENDS) Makefile
	@mkdir -p build
	$(CC) -std=c99 -O1 -g $(WARN) -Icsrc $(CFLAGS_EXTRA) -o $@ spec/core/test_resolver.c spec/shim/fakegai.c $(CORE_SRCS) -pthread -ldl
build/et_short_read: spec/core/et_short_read.c
	@mkdir -p build
	$(CC) -std=c99 -O2 $(WARN) $(CFLAGS_EXTRA) -o $@ $< -pthread
test-core: build/test_core build/test_core_poll build/test_core_debug build/test_core_debug_poll build/test_resolver build/et_short_read
	build/test_core
	build/test_core_poll
	build/test_core_debug
	build/test_core_debug_poll
	build/test_resolver
	build/et_short_read 32
test-core-asan:
	@mkdir -p build
	$(CC) -std=c99 -O1 -g $(WARN) -Icsrc $(ASAN_FLAGS) -o build/test_core_asan spec/core/test_core.c $(CORE_SRCS) -pthread
	$(CC) -std=c99 -O1 -g $(WARN) -Icsrc $(ASAN_FLAGS) -DDX_USE_POLL -o build/test_core_asan_poll spec/core/test_core.c $(CORE_SRCS) -pthread
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 build/test_core_asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 build/test_core_asan_poll
test-core-memcheck: build/test_core build/test_core_poll build/test_resolver
	valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=all build/test_core
	valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=all build/test_core_poll
	valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=all build/test_resolver

demo: deps
	$(MAKE) all
	$(LUA) examples/demo.lua

# AddressSanitizer + UBSan: a stock interpreter needs the runtimes preloaded.
ASAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
asan: deps shims
	$(MAKE) test-core-asan
	@mkdir -p build/asan/duplex
	$(CC) $(CFLAGS) -O1 $(ASAN_FLAGS) $(LDFLAGS_SO) -o build/asan/duplex/core.so $(SRCS) $(TLS_LIBS)
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	DUPLEX_CPATH=./build/asan/?.so \
	$(BUSTED) --cpath=./build/asan/?.so -o utfTerminal spec

# The poll(2) backend (used where epoll is missing), tried on Linux.
test-poll: deps shims
	@mkdir -p build/poll/duplex
	$(CC) $(CFLAGS) -DDX_USE_POLL $(LDFLAGS_SO) -o build/poll/duplex/core.so $(SRCS) $(TLS_LIBS)
	DUPLEX_CPATH=./build/poll/?.so $(BUSTED) --cpath=./build/poll/?.so -o utfTerminal spec

# The specs (but #timing) against a debug build: the loop's invariants
# asserted where its state changes, and all of them (dx_loop_check: slots,
# free list, FIFOs, timer heap, ready ring, counts) after every poll.
build/debug/duplex/core.so: $(SRCS) $(HDRS) $(BACKENDS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O1 -DDX_DEBUG $(LDFLAGS_SO) -o $@ $(SRCS) $(TLS_LIBS)
test-debug: deps shims build/debug/duplex/core.so
	DUPLEX_CPATH=./build/debug/?.so $(BUSTED) --cpath=./build/debug/?.so \
	  --exclude-tags=timing -o utfTerminal spec

# The signal spec against the signalfd build (-DDX_USE_SIGNALFD), which
# blocks watched signals instead of handling them: what processes the
# program starts then inherit is why it is not the default (childmask).
build/signalfd/duplex/core.so: $(SRCS) $(HDRS) $(BACKENDS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DDX_USE_SIGNALFD $(LDFLAGS_SO) -o $@ $(SRCS) $(TLS_LIBS)
test-signalfd: all build/signalfd/duplex/core.so
	DUPLEX_CPATH=./build/signalfd/?.so $(BUSTED) --cpath=./build/signalfd/?.so \
	  --exclude-tags=childmask -o utfTerminal spec/43-signals_spec.lua

# Every socket read and write cut to 1-7 bytes, EINTR one call in eight:
# a transfer and a line exchange must come out byte for byte, and not hang.
test-shortio: all $(BUILD)/shim/shortio.so
	bash spec/shim/run.sh

# The whole spec suite under valgrind, descriptors tracked: no memory
# error, no definite leak, no descriptor left open at exit but the three
# standard ones (spec/memcheck.sh reads valgrind's report).
memcheck: deps-tools all shims test-core-memcheck
	bash spec/memcheck.sh

# libFuzzer on the receive buffer and every read format against a
# reference model (dx_buf.c is included by the target, to fail its
# allocations), then a differential fuzz of reads over real sockets; each
# for FUZZ_SECONDS. New inputs go to build/fuzz-corpus, crashes to
# build/fuzz-artifacts; FUZZ_SEED reaches read_model.lua.
FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Icsrc
build/fuzz_read: spec/fuzz/fuzz_read.c csrc/dx_buf.c csrc/dx_buf.h csrc/dx_scan.c csrc/dx_scan.h
	@mkdir -p build
	clang $(FUZZ_CFLAGS) -o $@ spec/fuzz/fuzz_read.c csrc/dx_scan.c
build/fuzz_tls_feed: spec/fuzz/fuzz_tls_feed.c csrc/dx_tls.c csrc/dx_tls.h csrc/dx_net.c csrc/dx_net.h
	@mkdir -p build
	clang $(FUZZ_CFLAGS) $(TLS_CFLAGS) -o $@ spec/fuzz/fuzz_tls_feed.c csrc/dx_tls.c csrc/dx_net.c $(TLS_LIBS)
build/fuzz_proxy: spec/fuzz/fuzz_proxy.c csrc/dx_proxy.c csrc/dx_proxy.h csrc/dx_net.h
	@mkdir -p build
	clang $(FUZZ_CFLAGS) -o $@ spec/fuzz/fuzz_proxy.c csrc/dx_proxy.c
build/fuzz-tls/cert.pem:
	@mkdir -p build/fuzz-tls
	openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
	  -keyout build/fuzz-tls/key.pem -out $@ -days 2 -subj /CN=localhost 2>/dev/null

fuzz: deps-tools all build/fuzz_read
	@mkdir -p build/fuzz-corpus build/fuzz-artifacts
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 build/fuzz_read \
	  -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -dict=spec/fuzz/read.dict \
	  -artifact_prefix=build/fuzz-artifacts/ build/fuzz-corpus spec/fuzz/corpus/read
	FUZZ_SECONDS=$(FUZZ_SECONDS) LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" \
	  LUA_CPATH="./build/?.so;;" $(LUA) spec/fuzz/read_model.lua
	$(MAKE) fuzz-proxy
ifeq ($(TLS),1)
	$(MAKE) fuzz-tls
endif

# The PROXY protocol's parser and proxy_from's ranges (spec/fuzz/fuzz_proxy.c
# says what is checked), for FUZZ_SECONDS.
fuzz-proxy: build/fuzz_proxy
	@mkdir -p build/fuzz-proxy-corpus build/fuzz-artifacts
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 build/fuzz_proxy \
	  -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -dict=spec/fuzz/proxy.dict \
	  -artifact_prefix=build/fuzz-artifacts/ build/fuzz-proxy-corpus spec/fuzz/corpus/proxy

# TLS's feed: bytes received before TLS began, then the socket, into a
# server-side handshake and reads (FUZZ_SECONDS / 2).
fuzz-tls: build/fuzz_tls_feed build/fuzz-tls/cert.pem
	@mkdir -p build/fuzz-tls-corpus build/fuzz-artifacts
	FUZZ_TLS_CERT=build/fuzz-tls/cert.pem FUZZ_TLS_KEY=build/fuzz-tls/key.pem \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 build/fuzz_tls_feed \
	  -max_total_time=$$(( $(FUZZ_SECONDS) / 2 )) -print_final_stats=1 \
	  -artifact_prefix=build/fuzz-artifacts/ build/fuzz-tls-corpus spec/fuzz/corpus/tls

# Every server on every load; a full run (QUICK and SERVERS/LOADS unset)
# ends by writing bench/RESULTS.md and the chart bench/results.svg.
bench: all
	$(MAKE) -C bench run

clean:
	rm -rf build csrc/*.o
	-$(MAKE) -C bench clean 2>/dev/null
