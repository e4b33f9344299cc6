/*
 * libFuzzer entry point for the core, driven through Lua exactly as users drive it.
 *
 * One harness for every target: FUZZ_TARGET names fuzz/<target>.lua, a chunk that returns
 * the function run on each input. The chunk holds the target's invariants and raises when
 * one breaks; a raised error aborts here, so libFuzzer keeps the input like any crash.
 * Built by `make fuzz` with clang -fsanitize=fuzzer,address,undefined, linked with liblua5.4
 * and the core's sources (the core is opened with luaL_requiref, no dlopen).
 */
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef FUZZ_DIR
#error "FUZZ_DIR (the directory of the target chunks) must be defined"
#endif
#ifndef FUZZ_TARGET
#error "FUZZ_TARGET (open, keys or json) must be defined"
#endif

int luaopen_pagsmile_issuing_core(lua_State *L);
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;
static int one_ref = LUA_NOREF;

static void die(const char *what) {
  fprintf(stderr, "fuzz[%s]: %s: %s\n", FUZZ_TARGET, what, lua_tostring(L, -1));
  abort();
}

static int traceback(lua_State *Ls) {
  luaL_traceback(Ls, Ls, lua_tostring(Ls, 1), 1);
  return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  L = luaL_newstate();
  if (!L) abort();
  luaL_openlibs(L);
  luaL_requiref(L, "pagsmile.issuing.core", luaopen_pagsmile_issuing_core, 0);
  lua_pop(L, 1);
  /* The chunks share fuzz/common.lua with the corpus generator; "open" reads answers through
     the library's envelope.lua. */
  if (luaL_dostring(L, "package.path = '" FUZZ_DIR "/?.lua;" FUZZ_DIR "/../lua/?.lua;' .. package.path"))
    die("package.path");
  lua_pushcfunction(L, traceback);
  if (luaL_loadfile(L, FUZZ_DIR "/" FUZZ_TARGET ".lua")) die("load");
  if (lua_pcall(L, 0, 1, -2)) die("init");
  if (!lua_isfunction(L, -1)) die("the target chunk must return a function");
  one_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, 0);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_settop(L, 0);
  lua_pushcfunction(L, traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, one_ref);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 1)) die("invariant broken or error raised");
  lua_settop(L, 0);
  /*
   * Collect now, so that keys and buffers made for this input are freed within it: every
   * input then frees what it allocated, and libFuzzer's per-input leak check stays quiet
   * unless something is really lost. A full collection of this small heap is cheap.
   */
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
