/*
 * A minimal Lua 5.4 interpreter (`asan-lua script [args]`, what busted's --lua needs) built
 * with AddressSanitizer and UndefinedBehaviorSanitizer, to run the whole suite over the
 * sanitized core (build/asan/pagsmile/issuing/core.so) in `make test`.
 *
 * The sanitizer runtimes are linked into this executable, not preloaded: nginx, openssl and
 * the other commands the specs start inherit no LD_PRELOAD and run as they always do.
 * Any ASan or UBSan report, and any leak found by LeakSanitizer at exit, ends the process
 * with a non-zero status, which tools/run-specs counts as a failure.
 */
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int main(int argc, char **argv) {
  lua_State *L;
  int i, status;
  if (argc < 2) {
    fprintf(stderr, "usage: %s script [args]\n", argv[0]);
    return 2;
  }
  L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "%s: cannot create a Lua state\n", argv[0]);
    return 1;
  }
  lua_gc(L, LUA_GCGEN, 0, 0); /* as lua5.4 runs scripts */
  luaL_openlibs(L);
  /* arg[-1] = interpreter, arg[0] = script, arg[1..] = its arguments, as lua.c sets them. */
  lua_createtable(L, argc - 2, 2);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  lua_pushcfunction(L, traceback);
  status = luaL_loadfile(L, argv[1]);
  if (status == LUA_OK) {
    luaL_checkstack(L, argc, "too many arguments");
    for (i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
    status = lua_pcall(L, argc - 2, 0, 1);
  }
  if (status != LUA_OK) fprintf(stderr, "%s: %s\n", argv[0], lua_tostring(L, -1));
  lua_close(L);
  return status == LUA_OK ? 0 : 1;
}
