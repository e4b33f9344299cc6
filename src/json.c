/* placeholder until written */
#include "core.h"
void pagsmile_json_register(lua_State *L) { (void)L; }
int pagsmile_to_long(lua_State *L, int idx, int64_t *out) { (void)L; (void)idx; (void)out; return 0; }
