/* Monotonic time and sleeping for plain Lua (inside nginx the client uses ngx.sleep). */
#include "core.h"

#include <errno.h>
#include <time.h>

/* core.monotime() → seconds on a clock that never jumps (deadlines are measured on it). */
static int l_monotime(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* core.sleep(seconds): blocks the calling thread; fractions allowed. */
static int l_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  struct timespec ts, rem;
  if (!(s > 0)) return 0; /* NaN too */
  if (s > 1e6) s = 1e6;    /* (time_t) of a huge or infinite value is undefined */
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &rem) == -1 && errno == EINTR) ts = rem;
  return 0;
}

void pagsmile_clock_register(lua_State *L) {
  static const luaL_Reg funcs[] = {{"monotime", l_monotime}, {"sleep", l_sleep}, {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
}
