/*
 * Internal interfaces between the core's files. Lua sees only luaopen_pagsmile_issuing_core.
 */
#ifndef PAGSMILE_CORE_H
#define PAGSMILE_CORE_H

#include "compat.h"
#include <stddef.h>

#define PAGSMILE_ERRLEN 160

/*
 * A growable byte buffer owned by a Lua userdata (so a Lua error can never leak it) whose
 * contents are wiped when it grows, when pagsmile_buf_wipe is called, and in __gc.
 * Plaintext (biz_data JSON) and key material only ever live in these buffers.
 */
typedef struct {
  unsigned char *p;
  size_t len, cap;
} pagsmile_buf;

pagsmile_buf *pagsmile_buf_push(lua_State *L, size_t initial); /* pushes the userdata */
int pagsmile_buf_reserve(pagsmile_buf *b, size_t extra);       /* 0 on out of memory */
int pagsmile_buf_append(pagsmile_buf *b, const void *s, size_t n);
void pagsmile_buf_wipe(pagsmile_buf *b); /* cleanse + free; the buffer stays usable */
/* Cleanses the contents and empties the buffer, keeping its block if it is at most `keep`
   bytes (for the next use), freeing it otherwise. */
void pagsmile_buf_clear(pagsmile_buf *b, size_t keep);

/*
 * A handle's metatable: __index = methods, __gc = __close = close, __name = name. Created
 * once per Lua state; left on the stack so the caller can add to it and pop it.
 */
void pagsmile_handle_metatable(lua_State *L, const char *name, const luaL_Reg *methods,
                               lua_CFunction close);

/* json.c ------------------------------------------------------------------------------ */

/*
 * Encodes the value at stack index idx as JSON into out. Returns 1, or 0 with a message in
 * err (never containing string contents). Object keys are sorted, so equal tables give equal
 * bytes. Long values (see pagsmile_long) are written as bare integers.
 */
int pagsmile_json_encode(lua_State *L, int idx, pagsmile_buf *out, char *err, size_t errlen);

/*
 * Decodes s[0..n) and pushes the value: 1. On failure pushes nothing and returns 0 with a
 * message (position, never contents). Objects drop null members; arrays keep null as
 * the core's `null` sentinel. Integral numbers go through pagsmile_push_int64.
 */
int pagsmile_json_decode(lua_State *L, const char *s, size_t n, char *err, size_t errlen);

/* Registers json_encode, json_decode, long, null into the table on top of the stack. */
void pagsmile_json_register(lua_State *L);

/* The "long" marker: an int64 boxed in a userdata, written to JSON as a bare number. */
#define PAGSMILE_LONG_MT "pagsmile.issuing.long"
int pagsmile_to_long(lua_State *L, int idx, int64_t *out); /* 1 if idx is a long userdata */

/* crypto.c ---------------------------------------------------------------------------- */
void pagsmile_crypto_register(lua_State *L);

/* clock.c ----------------------------------------------------------------------------- */
void pagsmile_clock_register(lua_State *L);

/* http.c ------------------------------------------------------------------------------ */
void pagsmile_http_register(lua_State *L);

#endif
