/* placeholder until written */
#include "core.h"
void pagsmile_crypto_register(lua_State *L) { (void)L; }
