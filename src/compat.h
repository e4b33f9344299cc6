/*
 * The one compatibility header: Lua 5.1 / LuaJIT 2.1 / 5.3 / 5.4.
 * Only what the core uses; nothing here is exported.
 */
#ifndef PAGSMILE_COMPAT_H
#define PAGSMILE_COMPAT_H

#include <lua.h>
#include <lauxlib.h>
#include <stdint.h>

#if LUA_VERSION_NUM < 502
#define lua_rawlen(L, i) lua_objlen(L, (i))
#ifndef luaL_newlibtable
#define luaL_newlibtable(L, l) lua_createtable(L, 0, (int)(sizeof(l) / sizeof((l)[0]) - 1))
#endif
#ifndef luaL_newlib
#define luaL_newlib(L, l) (luaL_newlibtable(L, l), luaL_setfuncs(L, l, 0))
#endif
#ifndef LUAJIT_VERSION_NUM
/* LuaJIT 2.1 ships luaL_setfuncs and luaL_testudata; PUC 5.1 does not. */
void luaL_setfuncs(lua_State *L, const luaL_Reg *l, int nup);
void *luaL_testudata(lua_State *L, int ud, const char *tname);
#define PAGSMILE_NEED_COMPAT_FUNCS 1
#endif
#ifndef LUAJIT_VERSION_NUM
#define luaL_setmetatable(L, t) (luaL_getmetatable(L, t), lua_setmetatable(L, -2))
#endif
#endif

#if LUA_VERSION_NUM >= 503
#define PAGSMILE_HAVE_INT64 1
#endif

/*
 * Integers that came from JSON or must go to JSON exactly ("long" in the API).
 * 5.3+: a Lua integer. 5.1/LuaJIT: a number while |v| <= 2^53, a decimal string beyond.
 */
void pagsmile_push_int64(lua_State *L, int64_t v);

#endif
