# pagsmile-issuing. `make demo` and `make test` are all a new user needs.
RUNTIMES  := 5.1 5.3 5.4 jit
CC        ?= cc
OPTFLAGS  ?= -O2 -gdwarf-4
WARNFLAGS := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
DEPFLAGS  := $(shell pkg-config --cflags libcurl openssl 2>/dev/null)
DEPLIBS   := $(shell pkg-config --libs libcurl openssl 2>/dev/null || echo -lcurl -lssl -lcrypto)
SRCS      := $(wildcard src/*.c)
HDRS      := $(wildcard src/*.h)

lua_inc_5.1 := /usr/include/lua5.1
lua_inc_5.3 := /usr/include/lua5.3
lua_inc_5.4 := /usr/include/lua5.4
lua_inc_jit := /usr/include/luajit-2.1

CORES := $(foreach r,$(RUNTIMES),build/$(r)/pagsmile/issuing/core.so)
# The sanitizer build (see `asan` below).
SAN_CC    ?= clang
SANFLAGS  := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
ASAN_BINS := build/asan/lua5.4 build/asan/pagsmile/issuing/core.so

.PHONY: all build demo test sandbox bench lint valgrind asan fuzz fuzz-corpus deps deps-demo deps-doc deps-bench \
        doc rock clean
all: build
build: $(CORES)

# A C module links against libcurl and OpenSSL, never against liblua: the host provides Lua.
build/%/pagsmile/issuing/core.so: $(SRCS) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -D_POSIX_C_SOURCE=200809L $(OPTFLAGS) $(WARNFLAGS) -fPIC -fvisibility=hidden -shared \
	  -I$(lua_inc_$*) $(DEPFLAGS) $(CFLAGS) -o $@ $(SRCS) $(DEPLIBS) $(LDFLAGS)

# Three package lists (tools/deps): the demo and the sandbox need only Lua 5.4 (the client),
# nginx's LuaJIT (the sandbox runs in it) and the build tools, so they build those two cores;
# `make test` and the rest need every runtime.
DEMO_CORES := build/5.4/pagsmile/issuing/core.so build/jit/pagsmile/issuing/core.so

deps:
	@tools/deps test

deps-demo:
	@tools/deps demo

deps-doc:
	@tools/deps doc

deps-bench:
	@tools/deps bench

demo: deps-demo $(DEMO_CORES)
	@tools/demo

test: deps build $(ASAN_BINS)
	@tools/run-specs

sandbox: deps-demo $(DEMO_CORES)
	@tools/sandbox $(ARGS)

# The API reference (LDoc, config.ld): build/doc/index.html. A warning (an unresolved
# reference, a bad tag) fails it; spec/60-doc_spec.lua checks that nothing is missing.
doc: deps-doc
	@mkdir -p build
	@ldoc --fatalwarnings . >build/ldoc.log 2>&1 || { cat build/ldoc.log; exit 1; }
	@echo "API reference: build/doc/index.html"

lint:
	luacheck lua spec examples sandbox bench fuzz tools/*.lua bin/pagsmile-issuing

bench: deps-bench build
	@tools/bench

valgrind: deps build
	@tools/run-specs --valgrind

# The sanitizer build (issue #5): the core with ASan+UBSan, and a Lua 5.4 interpreter that
# carries the sanitizer runtimes, so the whole busted suite runs over it once in `make test`
# (and alone with `make asan`). Any report fails the run.

build/asan/pagsmile/issuing/core.so: $(SRCS) $(HDRS)
	@mkdir -p $(dir $@)
	$(SAN_CC) -std=c99 -D_POSIX_C_SOURCE=200809L -O1 -g $(SANFLAGS) $(WARNFLAGS) -fPIC -fvisibility=hidden -shared \
	  -I$(lua_inc_5.4) $(DEPFLAGS) -o $@ $(SRCS) $(DEPLIBS)

build/asan/lua5.4: fuzz/asan-lua.c
	@mkdir -p $(dir $@)
	$(SAN_CC) -std=c99 -O1 -g $(SANFLAGS) $(WARNFLAGS) -I$(lua_inc_5.4) -o $@ $< -llua5.4

asan: deps build $(ASAN_BINS)
	@tools/run-specs --asan

# libFuzzer over what hostile answers and pasted keys reach: envelope.open/core.unseal (answers),
# core.public_key/private_key (keys), core.json_decode (bytes). One harness (fuzz/harness.c)
# drives fuzz/<target>.lua; the seeds come from real sandbox answers (fuzz/make-corpus.lua,
# into build/fuzz-corpus: it holds throwaway private keys, never commit it).
#   make fuzz FUZZ_SECONDS=600 FUZZ_TARGETS=open
FUZZ_TARGETS ?= open keys json
FUZZ_SECONDS ?= 60
FUZZ_BINS    := $(foreach t,open keys json,build/fuzz/fuzz-$(t))
LUA54_ENV    := LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;./?.lua;spec/?.lua;fuzz/?.lua;;' \
                LUA_CPATH_5_4='build/5.4/?.so;;'

build/fuzz/fuzz-%: fuzz/harness.c $(SRCS) $(HDRS)
	@mkdir -p $(dir $@)
	$(SAN_CC) -std=c99 -D_POSIX_C_SOURCE=200809L -O1 -g -fsanitize=fuzzer $(SANFLAGS) \
	  $(WARNFLAGS) -I$(lua_inc_5.4) $(DEPFLAGS) -DFUZZ_DIR='"$(CURDIR)/fuzz"' \
	  -DFUZZ_TARGET='"$*"' -o $@ fuzz/harness.c $(SRCS) -llua5.4 $(DEPLIBS)

build/fuzz-corpus/.done: fuzz/make-corpus.lua fuzz/common.lua build/5.4/pagsmile/issuing/core.so
	$(LUA54_ENV) lua5.4 fuzz/make-corpus.lua build/fuzz-corpus
	@touch $@

fuzz-corpus: deps build build/fuzz-corpus/.done

fuzz: deps build $(FUZZ_BINS) build/fuzz-corpus/.done
	@FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run $(FUZZ_TARGETS)

# Binary rocks a user can `luarocks install` offline, one per Lua version, built by plain
# `luarocks make` (no variables: the rockspec finds libcurl on Debian/Ubuntu by itself):
#   build/rock/5.1/pagsmile-issuing-0.2.0-1.linux-x86_64.rock, and the same under 5.4
ROCKSPEC := $(wildcard rockspec/pagsmile-issuing-*.rockspec)
rock:
	@for v in 5.1 5.4; do \
	  rm -rf build/rock/$$v && mkdir -p build/rock/$$v && \
	  luarocks --lua-version=$$v --tree=build/rock/$$v/tree make --pack-binary-rock $(ROCKSPEC) \
	    >build/rock/$$v/build.log 2>&1 && mv ./pagsmile-issuing-*.rock build/rock/$$v/ || \
	    { cat build/rock/$$v/build.log; exit 1; }; \
	  ls build/rock/$$v/*.rock; \
	done

clean:
	rm -rf build
