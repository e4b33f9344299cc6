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

.PHONY: all build demo test sandbox bench lint valgrind deps rock clean
all: build
build: $(CORES)

# A C module links against libcurl and OpenSSL, never against liblua: the host provides Lua.
build/%/pagsmile/issuing/core.so: $(SRCS) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -D_POSIX_C_SOURCE=200809L $(OPTFLAGS) $(WARNFLAGS) -fPIC -shared \
	  -I$(lua_inc_$*) $(DEPFLAGS) $(CFLAGS) -o $@ $(SRCS) $(DEPLIBS) $(LDFLAGS)

deps:
	@tools/deps

demo: deps build
	@tools/demo

test: deps build
	@tools/run-specs

sandbox: deps build
	@tools/sandbox

lint:
	luacheck lua spec examples tools/*.lua

bench: deps build
	@tools/bench

valgrind: deps build
	@tools/run-specs --valgrind

# Installs the rock into ./build/rock (offline). Debian keeps curl.h under the multiarch dir.
CURL_INCDIR ?= $(patsubst -I%,%,$(filter -I%,$(shell pkg-config --cflags libcurl))) \
               $(dir $(shell echo '\#include <curl/curl.h>' | $(CC) -M -xc - 2>/dev/null | grep -o '/[^ ]*curl/curl.h'))
rock:
	luarocks --lua-version=5.4 --tree=build/rock make rockspec/pagsmile-issuing-scm-1.rockspec \
	  CURL_INCDIR=$(patsubst %/curl/,%,$(firstword $(strip $(CURL_INCDIR))))

clean:
	rm -rf build
