/* placeholder until written */
#include "core.h"
void pagsmile_http_register(lua_State *L) { (void)L; }
