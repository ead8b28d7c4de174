# duplex: developer entry point. `make` builds build/duplex/core.so.
LUA         ?= lua5.4
LUA_INCDIR  ?= /usr/include/lua5.4
CC          ?= cc
CFLAGS_EXTRA ?=
WARN   = -Wall -Wextra -Wshadow -Wundef -Wwrite-strings -Wmissing-prototypes -Wstrict-prototypes
CFLAGS = -std=c99 -O2 -g -fPIC -fvisibility=hidden $(WARN) -I$(LUA_INCDIR) $(CFLAGS_EXTRA)
LDFLAGS_SO = -shared

SRCS = $(filter-out csrc/dx_loop_%.c,$(wildcard csrc/*.c))
HDRS = $(wildcard csrc/*.h)
OUT  = build/duplex/core.so
BUSTED = busted --lua=$(LUA)

.PHONY: all test test-poll demo asan memcheck bench clean deps

all: $(OUT)

$(OUT): $(SRCS) $(HDRS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS_SO) -o $@ $(SRCS)

# Install what is missing on Debian (as root), or say the exact command.
DEPS_PKGS = lua5.4 liblua5.4-dev lua-busted luarocks python3 netcat-openbsd
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

test: deps
	$(MAKE) all
	$(BUSTED) -o utfTerminal spec

demo: deps
	$(MAKE) all
	$(LUA) examples/demo.lua

# AddressSanitizer + UBSan: a stock interpreter needs the runtimes preloaded.
ASAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
asan: deps
	@mkdir -p build/asan/duplex
	$(CC) $(CFLAGS) -O1 $(ASAN_FLAGS) $(LDFLAGS_SO) -o build/asan/duplex/core.so $(SRCS)
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	DUPLEX_CPATH=./build/asan/?.so \
	$(BUSTED) --cpath=./build/asan/?.so -o utfTerminal spec

# The poll(2) backend (used where epoll is missing), tried on Linux.
test-poll: deps
	@mkdir -p build/poll/duplex
	$(CC) $(CFLAGS) -DDX_USE_POLL $(LDFLAGS_SO) -o build/poll/duplex/core.so $(SRCS)
	DUPLEX_CPATH=./build/poll/?.so $(BUSTED) --cpath=./build/poll/?.so -o utfTerminal spec

memcheck: all
	valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
	  $(LUA) examples/demo.lua

bench: all
	$(MAKE) -C bench run

clean:
	rm -rf build csrc/*.o
	-$(MAKE) -C bench clean 2>/dev/null
