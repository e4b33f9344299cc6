/*
 * pagsmile.issuing.core: keys, seal/open, JSON bytes and the libcurl handle.
 * Loading it has no side effect beyond building its table; process-wide library
 * initialisation happens once, on first use, in the file that needs it.
 */
#include "core.h"

#ifndef PAGSMILE_VERSION
#define PAGSMILE_VERSION "0.2.0"
#endif

/* The one symbol the module exports (it is built with -fvisibility=hidden). */
#define PAGSMILE_EXPORT __attribute__((visibility("default")))

PAGSMILE_EXPORT int luaopen_pagsmile_issuing_core(lua_State *L);

PAGSMILE_EXPORT int luaopen_pagsmile_issuing_core(lua_State *L) {
  lua_newtable(L);
  pagsmile_json_register(L);
  pagsmile_crypto_register(L);
  pagsmile_http_register(L);
  pagsmile_clock_register(L);
  lua_pushliteral(L, PAGSMILE_VERSION);
  lua_setfield(L, -2, "_VERSION");
  return 1;
}
