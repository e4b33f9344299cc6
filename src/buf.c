/* The wiped buffer of core.h, the handle metatable, and the compat functions PUC Lua 5.1
 * lacks. */
#include "core.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#define BUF_MT "pagsmile.issuing.buf"

void pagsmile_buf_wipe(pagsmile_buf *b) {
  if (b->p) {
    OPENSSL_cleanse(b->p, b->cap);
    free(b->p);
  }
  b->p = NULL;
  b->len = b->cap = 0;
}

void pagsmile_buf_clear(pagsmile_buf *b, size_t keep) {
  if (b->cap > keep) {
    pagsmile_buf_wipe(b);
  } else if (b->p) {
    OPENSSL_cleanse(b->p, b->len);
    b->len = 0;
  }
}

static int buf_gc(lua_State *L) {
  pagsmile_buf_wipe((pagsmile_buf *)lua_touserdata(L, 1));
  return 0;
}

pagsmile_buf *pagsmile_buf_push(lua_State *L, size_t initial) {
  pagsmile_buf *b = (pagsmile_buf *)lua_newuserdata(L, sizeof *b);
  b->p = NULL;
  b->len = b->cap = 0;
  if (luaL_newmetatable(L, BUF_MT)) {
    lua_pushcfunction(L, buf_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  if (initial && !pagsmile_buf_reserve(b, initial))
    luaL_error(L, "pagsmile.issuing: out of memory");
  return b;
}

/* Grows by copying into a fresh block and wiping the old one: realloc could leave a copy. */
int pagsmile_buf_reserve(pagsmile_buf *b, size_t extra) {
  size_t need, cap;
  unsigned char *p;
  if (extra > (size_t)-1 - b->len) return 0;
  need = b->len + extra;
  if (need <= b->cap) return 1;
  cap = b->cap ? b->cap : 256;
  while (cap < need) {
    if (cap > (size_t)-1 / 2) { cap = need; break; }
    cap *= 2;
  }
  p = (unsigned char *)malloc(cap);
  if (!p) return 0;
  if (b->p) {
    memcpy(p, b->p, b->len);
    OPENSSL_cleanse(b->p, b->cap);
    free(b->p);
  }
  b->p = p;
  b->cap = cap;
  return 1;
}

int pagsmile_buf_append(pagsmile_buf *b, const void *s, size_t n) {
  if (!pagsmile_buf_reserve(b, n)) return 0;
  if (n) memcpy(b->p + b->len, s, n);
  b->len += n;
  return 1;
}

void pagsmile_handle_metatable(lua_State *L, const char *name, const luaL_Reg *methods,
                               lua_CFunction close) {
  if (!luaL_newmetatable(L, name)) return;
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, close);
  lua_setfield(L, -2, "__close");
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
}

void pagsmile_push_int64(lua_State *L, int64_t v) {
#ifdef PAGSMILE_HAVE_INT64
  lua_pushinteger(L, (lua_Integer)v);
#else
  if (v <= ((int64_t)1 << 53) && v >= -((int64_t)1 << 53)) {
    lua_pushnumber(L, (lua_Number)v);
  } else {
    char s[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char tmp[24];
    do { tmp[n++] = (char)('0' + u % 10); u /= 10; } while (u);
    {
      int i = 0;
      if (v < 0) s[i++] = '-';
      while (n) s[i++] = tmp[--n];
      lua_pushlstring(L, s, (size_t)i);
    }
  }
#endif
}

#ifdef PAGSMILE_NEED_COMPAT_FUNCS
void luaL_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup + 1, "too many upvalues");
  for (; l->name; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}

void *luaL_testudata(lua_State *L, int ud, const char *tname) {
  void *p = lua_touserdata(L, ud);
  if (p && lua_getmetatable(L, ud)) {
    luaL_getmetatable(L, tname);
    if (!lua_rawequal(L, -1, -2)) p = NULL;
    lua_pop(L, 2);
    return p;
  }
  return NULL;
}
#endif
