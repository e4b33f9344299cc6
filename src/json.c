/*
 * The JSON codec of the core. Our own, because lua-cjson turns every number into a double
 * and prints 14 digits: the API's "long" ids (above 2^53 in the wild) would be corrupted.
 *
 * Encoding writes into a pagsmile_buf (wiped memory: biz_data plaintext goes through here).
 * Decoding builds values directly on the Lua stack and owns no heap memory, so a Lua error
 * (out of memory) can never leak; the input is hostile and is never echoed in messages.
 */
#include "core.h"

#include <errno.h>
#include <float.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENC_MAX_DEPTH 32
#define DEC_MAX_DEPTH 64
#define MAX_SAFE_DOUBLE 9007199254740992.0 /* 2^53: every integer up to here is exact */

/* shared helpers -------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (1-4), or 0: overlong, surrogate, > U+10FFFF,
 * stray continuation byte, or truncated. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end) {
  unsigned c = p[0], lo = 0x80, hi = 0xBF;
  size_t n, i;
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0;
  if (c < 0xE0) n = 2;
  else if (c < 0xF0) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    else if (c == 0xED) hi = 0x9F;
  } else if (c < 0xF5) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    else if (c == 0xF4) hi = 0x8F;
  } else return 0;
  if ((size_t)(end - p) < n) return 0;
  if (p[1] < lo || p[1] > hi) return 0;
  for (i = 2; i < n; i++)
    if ((p[i] & 0xC0) != 0x80) return 0;
  return n;
}

/* Decimal digits of v into out (at least 21 bytes), not terminated; returns the length. */
static size_t fmt_i64(int64_t v, char *out) {
  char tmp[20];
  size_t n = 0, i = 0;
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do { tmp[n++] = (char)('0' + (int)(u % 10)); u /= 10; } while (u);
  if (v < 0) out[i++] = '-';
  while (n) out[i++] = tmp[--n];
  return i;
}

/* Parses -?(0|[1-9][0-9]*) spanning exactly s[0..n). 1: fits int64; 0: not of that form;
 * -1: of that form but outside int64. */
static int parse_i64(const char *s, size_t n, int64_t *out) {
  size_t i = 0;
  int neg = 0;
  uint64_t acc = 0, limit;
  if (i < n && s[i] == '-') { neg = 1; i++; }
  if (i == n || s[i] < '0' || s[i] > '9') return 0;
  if (s[i] == '0' && i + 1 < n) return 0;
  limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  for (; i < n; i++) {
    unsigned dgt;
    if (s[i] < '0' || s[i] > '9') return 0;
    dgt = (unsigned)(s[i] - '0');
    if (acc > (limit - dgt) / 10) {
      for (i++; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
      return -1;
    }
    acc = acc * 10 + dgt;
  }
  if (neg) *out = acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc;
  else *out = (int64_t)acc;
  return 1;
}

/* The C library's decimal point for this locale: "." unless someone called setlocale. */
static const char *decimal_point(void) {
  const char *dp = localeconv()->decimal_point;
  return dp && *dp ? dp : ".";
}

/* long ------------------------------------------------------------------------------- */

int pagsmile_to_long(lua_State *L, int idx, int64_t *out) {
  int64_t *p;
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  if (lua_type(L, idx) != LUA_TUSERDATA) return 0;
  p = (int64_t *)luaL_testudata(L, idx, PAGSMILE_LONG_MT);
  if (!p) return 0;
  if (out) *out = *p;
  return 1;
}

static void push_long(lua_State *L, int64_t v) {
  int64_t *p = (int64_t *)lua_newuserdata(L, sizeof *p);
  *p = v;
  luaL_setmetatable(L, PAGSMILE_LONG_MT);
}

static int l_long(lua_State *L) {
  int64_t v;
  lua_settop(L, 1);
  switch (lua_type(L, 1)) {
  case LUA_TUSERDATA:
    if (pagsmile_to_long(L, 1, NULL)) return 1;
    break;
  case LUA_TNUMBER: {
    lua_Number d;
#ifdef PAGSMILE_HAVE_INT64
    if (lua_isinteger(L, 1)) {
      push_long(L, (int64_t)lua_tointeger(L, 1));
      return 1;
    }
#endif
    d = lua_tonumber(L, 1);
    if (d >= -MAX_SAFE_DOUBLE && d <= MAX_SAFE_DOUBLE && (lua_Number)(int64_t)d == d) {
      push_long(L, (int64_t)d);
      return 1;
    }
    lua_pushnil(L);
    lua_pushliteral(L, "long: number is not an integer within 2^53");
    return 2;
  }
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, 1, &n);
    int r = parse_i64(s, n, &v);
    if (r == 1) {
      push_long(L, v);
      return 1;
    }
    lua_pushnil(L);
    if (r < 0) lua_pushliteral(L, "long: decimal string outside the 64-bit range");
    else lua_pushliteral(L, "long: string is not a decimal integer");
    return 2;
  }
  default:
    break;
  }
  lua_pushnil(L);
  lua_pushfstring(L, "long: integer or decimal string expected, got %s",
                  luaL_typename(L, 1));
  return 2;
}

static int l_is_long(lua_State *L) {
  lua_pushboolean(L, pagsmile_to_long(L, 1, NULL));
  return 1;
}

static int l_long_value(lua_State *L) {
  int64_t *p = (int64_t *)luaL_checkudata(L, 1, PAGSMILE_LONG_MT);
  pagsmile_push_int64(L, *p);
  return 1;
}

static int long_tostring(lua_State *L) {
  char s[24];
  int64_t *p = (int64_t *)luaL_checkudata(L, 1, PAGSMILE_LONG_MT);
  lua_pushlstring(L, s, fmt_i64(*p, s));
  return 1;
}

static int long_eq(lua_State *L) {
  int64_t a, b;
  lua_pushboolean(L, pagsmile_to_long(L, 1, &a) && pagsmile_to_long(L, 2, &b) && a == b);
  return 1;
}

/* encoder ----------------------------------------------------------------------------- */

typedef struct {
  const char *key; /* NULL: an array position */
  size_t keylen;
  int64_t index;
} enc_step;

typedef struct {
  lua_State *L;
  pagsmile_buf *out;
  char *err;
  size_t errlen;
  enc_step path[ENC_MAX_DEPTH + 1];
} enc_t;

typedef struct {
  const char *s;
  size_t len;
} enc_key;

/* Keys are field names and show in the path; anything else (data used as keys) is hidden. */
static int printable_key(const char *s, size_t n) {
  size_t i;
  if (n == 0 || n > 48) return 0;
  for (i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

/* "<path>: <what>"; a path too long for err (a cycle) keeps its head and ends in "...". */
static int enc_fail(enc_t *e, int depth, const char *what) {
  char path[512];
  size_t used = 0, room, wl = strlen(what);
  int i;
  if (!e->errlen) return 0;
  path[0] = '\0';
  for (i = 0; i < depth && used + 1 < sizeof path; i++) {
    const enc_step *st = &e->path[i];
    int w;
    if (!st->key)
      w = snprintf(path + used, sizeof path - used, "[%lld]", (long long)st->index);
    else if (printable_key(st->key, st->keylen))
      w = snprintf(path + used, sizeof path - used, "%s%.*s", i ? "." : "",
                   (int)st->keylen, st->key);
    else
      w = snprintf(path + used, sizeof path - used, "%s", i ? ".?" : "?");
    if (w < 0) break;
    used += (size_t)w;
    if (used >= sizeof path) used = sizeof path - 1;
  }
  room = e->errlen > wl + 3 ? e->errlen - wl - 3 : 0; /* ": " and the terminator */
  if (used > room) {
    used = room > 3 ? room - 3 : 0;
    memcpy(path + used, "...", 4);
    used += 3;
  }
  if (used) snprintf(e->err, e->errlen, "%.*s: %s", (int)used, path, what);
  else snprintf(e->err, e->errlen, "%s", what);
  return 0;
}

#define PUT(e, s, n) \
  do { if (!pagsmile_buf_append((e)->out, (s), (n))) return enc_fail((e), 0, "out of memory"); } while (0)

static int enc_string(enc_t *e, const unsigned char *s, size_t len, int depth) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *end = s + len, *p = s, *run = s;
  if (!pagsmile_buf_reserve(e->out, len + 2)) return enc_fail(e, 0, "out of memory");
  e->out->p[e->out->len++] = '"';
  while (p < end) {
    unsigned c = *p;
    char esc[6];
    size_t en = 2;
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') { p++; continue; }
    if (c >= 0x80) {
      size_t k = utf8_len(p, end);
      if (!k) return enc_fail(e, depth, "invalid UTF-8 in string");
      p += k;
      continue;
    }
    PUT(e, run, (size_t)(p - run));
    esc[0] = '\\';
    switch (c) {
    case '"': esc[1] = '"'; break;
    case '\\': esc[1] = '\\'; break;
    case '\b': esc[1] = 'b'; break;
    case '\f': esc[1] = 'f'; break;
    case '\n': esc[1] = 'n'; break;
    case '\r': esc[1] = 'r'; break;
    case '\t': esc[1] = 't'; break;
    default:
      esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
      esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
      en = 6;
    }
    PUT(e, esc, en);
    run = ++p;
  }
  PUT(e, run, (size_t)(p - run));
  PUT(e, "\"", 1);
  return 1;
}

static int enc_double(enc_t *e, double d, int depth) {
  char s[40];
  size_t n, i;
  int prec;
  if (!(d == d) || d > DBL_MAX || d < -DBL_MAX)
    return enc_fail(e, depth, "number is NaN or infinite");
  if (d >= -MAX_SAFE_DOUBLE && d <= MAX_SAFE_DOUBLE && (double)(int64_t)d == d) {
    n = fmt_i64((int64_t)d, s);
    PUT(e, s, n);
    return 1;
  }
  /* Formatting and strtod share the C locale, so the round-trip test holds in any locale. */
  for (prec = 15; prec < 17; prec++) {
    snprintf(s, sizeof s, "%.*g", prec, d);
    if (strtod(s, NULL) == d) break;
  }
  if (prec == 17) snprintf(s, sizeof s, "%.17g", d);
  n = strlen(s);
  for (i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || c == '-' || c == '+' || c == 'e' || c == 'E')) {
      size_t dl = strlen(decimal_point());
      if (dl > n - i) dl = n - i;
      s[i] = '.';
      memmove(s + i + 1, s + i + dl, n - i - dl + 1);
      n -= dl - 1;
      break;
    }
  }
  PUT(e, s, n);
  return 1;
}

static int key_less(const enc_key *a, const enc_key *b) {
  size_t n = a->len < b->len ? a->len : b->len;
  int c = memcmp(a->s, b->s, n);
  return c < 0 || (c == 0 && a->len < b->len);
}

static int key_cmp(const void *a, const void *b) {
  return key_less((const enc_key *)a, (const enc_key *)b) ? -1
       : key_less((const enc_key *)b, (const enc_key *)a) ? 1 : 0;
}

static int enc_value(enc_t *e, int idx, int depth);

static int enc_table(enc_t *e, int t, int depth) {
  lua_State *L = e->L;
  size_t n = 0, nstr = 0, nint = 0, i;
  int64_t maxk = 0;
  int badtype = LUA_TNIL;
  enc_key small[32], *keys = small;

  if (depth >= ENC_MAX_DEPTH)
    return enc_fail(e, depth, "tables nested deeper than 32 (or a cycle)");
  if (!lua_checkstack(L, 6)) return enc_fail(e, depth, "out of Lua stack space");

  lua_pushnil(L);
  while (lua_next(L, t)) {
    int kt = lua_type(L, -2);
    n++;
    if (kt == LUA_TSTRING) nstr++;
    else if (kt == LUA_TNUMBER) {
      int64_t k = 0;
      int ok = 0;
#ifdef PAGSMILE_HAVE_INT64
      if (lua_isinteger(L, -2)) {
        k = (int64_t)lua_tointeger(L, -2);
        ok = k >= 1;
      }
#else
      lua_Number d = lua_tonumber(L, -2);
      if (d >= 1 && d <= MAX_SAFE_DOUBLE && (lua_Number)(int64_t)d == d) {
        k = (int64_t)d;
        ok = 1;
      }
#endif
      if (ok) {
        nint++;
        if (k > maxk) maxk = k;
      } else if (badtype == LUA_TNIL) badtype = kt;
    } else if (badtype == LUA_TNIL) badtype = kt;
    lua_pop(L, 1);
  }

  if (n == 0) {
    PUT(e, "{}", 2);
    return 1;
  }
  if (nint == n && maxk == (int64_t)n) {
    PUT(e, "[", 1);
    for (i = 1; i <= n; i++) {
      if (i > 1) PUT(e, ",", 1);
      e->path[depth].key = NULL;
      e->path[depth].index = (int64_t)i;
      lua_rawgeti(L, t, (int)i);
      if (!enc_value(e, lua_gettop(L), depth + 1)) return 0;
      lua_pop(L, 1);
    }
    PUT(e, "]", 1);
    return 1;
  }
  if (nstr != n) {
    /* Only positive integer keys besides strings: a mixed table or a sparse array. */
    char msg[96];
    snprintf(msg, sizeof msg, "object key must be a string, got %s%s",
             lua_typename(L, badtype == LUA_TNIL ? LUA_TNUMBER : badtype),
             badtype == LUA_TNIL ? " (mixed table or sparse array)" : "");
    return enc_fail(e, depth, msg);
  }

  if (n > sizeof small / sizeof small[0])
    keys = (enc_key *)lua_newuserdata(L, n * sizeof *keys); /* Lua owns it: no leak */
  i = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    /* The table holds each key and is never modified, and Lua's collector does not move
     * objects: the pointers stay valid while we encode. */
    keys[i].s = lua_tolstring(L, -2, &keys[i].len);
    i++;
    lua_pop(L, 1);
  }
  if (n <= 32) {
    size_t j;
    for (i = 1; i < n; i++) {
      enc_key k = keys[i];
      for (j = i; j > 0 && key_less(&k, &keys[j - 1]); j--) keys[j] = keys[j - 1];
      keys[j] = k;
    }
  } else {
    qsort(keys, n, sizeof *keys, key_cmp);
  }

  PUT(e, "{", 1);
  for (i = 0; i < n; i++) {
    if (i) PUT(e, ",", 1);
    e->path[depth].key = keys[i].s;
    e->path[depth].keylen = keys[i].len;
    if (!enc_string(e, (const unsigned char *)keys[i].s, keys[i].len, depth + 1)) return 0;
    PUT(e, ":", 1);
    lua_pushlstring(L, keys[i].s, keys[i].len);
    lua_rawget(L, t);
    if (!enc_value(e, lua_gettop(L), depth + 1)) return 0;
    lua_pop(L, 1);
  }
  PUT(e, "}", 1);
  if (keys != small) lua_pop(L, 1);
  return 1;
}

static int enc_value(enc_t *e, int idx, int depth) {
  lua_State *L = e->L;
  char msg[64];
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    PUT(e, "null", 4);
    return 1;
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx)) PUT(e, "true", 4);
    else PUT(e, "false", 5);
    return 1;
  case LUA_TNUMBER:
#ifdef PAGSMILE_HAVE_INT64
    if (lua_isinteger(L, idx)) {
      char s[24];
      PUT(e, s, fmt_i64((int64_t)lua_tointeger(L, idx), s));
      return 1;
    }
#endif
    return enc_double(e, (double)lua_tonumber(L, idx), depth);
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    return enc_string(e, (const unsigned char *)s, n, depth);
  }
  case LUA_TTABLE:
    return enc_table(e, idx, depth);
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL) {
      PUT(e, "null", 4);
      return 1;
    }
    break;
  case LUA_TUSERDATA: {
    int64_t v;
    if (pagsmile_to_long(L, idx, &v)) {
      char s[24];
      PUT(e, s, fmt_i64(v, s));
      return 1;
    }
    break;
  }
  default:
    break;
  }
  snprintf(msg, sizeof msg, "cannot encode a %s", luaL_typename(L, idx));
  return enc_fail(e, depth, msg);
}

int pagsmile_json_encode(lua_State *L, int idx, pagsmile_buf *out, char *err, size_t errlen) {
  enc_t e;
  int top = lua_gettop(L), ok;
  size_t len0 = out->len;
  if (idx < 0) idx = top + idx + 1;
  e.L = L;
  e.out = out;
  e.err = err;
  e.errlen = errlen;
  ok = enc_value(&e, idx, 0);
  lua_settop(L, top);
  if (!ok) out->len = len0;
  return ok;
}

/* decoder ----------------------------------------------------------------------------- */

typedef struct {
  lua_State *L;
  const unsigned char *s, *p, *end;
  char *err;
  size_t errlen;
} dec_t;

static int dec_fail(dec_t *d, const unsigned char *at, const char *what) {
  if (d->errlen)
    snprintf(d->err, d->errlen, "invalid JSON at byte %lu: %s",
             (unsigned long)(at - d->s) + 1, what);
  return 0;
}

#define IS_WS(c) ((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\r')
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

static void skip_ws(dec_t *d) {
  while (d->p < d->end && IS_WS(*d->p)) d->p++;
}

static int hex4(const unsigned char *p, unsigned *out) {
  unsigned v = 0;
  int i;
  for (i = 0; i < 4; i++) {
    unsigned c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else return 0;
  }
  *out = v;
  return 1;
}

/* \uXXXX (p at the backslash), with a surrogate pair when needed: the code point's bytes. */
static int dec_uescape(dec_t *d, const unsigned char **pp, char *u8, size_t *u8len) {
  const unsigned char *p = *pp;
  unsigned cp, lo;
  if (d->end - p < 6 || !hex4(p + 2, &cp)) return dec_fail(d, p, "invalid \\u escape");
  p += 6;
  if (cp >= 0xDC00 && cp <= 0xDFFF) return dec_fail(d, p - 6, "lone low surrogate");
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    if (d->end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, &lo) ||
        lo < 0xDC00 || lo > 0xDFFF)
      return dec_fail(d, p - 6, "high surrogate without a low surrogate");
    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    p += 6;
  }
  if (cp < 0x80) {
    u8[0] = (char)cp;
    *u8len = 1;
  } else if (cp < 0x800) {
    u8[0] = (char)(0xC0 | (cp >> 6));
    u8[1] = (char)(0x80 | (cp & 0x3F));
    *u8len = 2;
  } else if (cp < 0x10000) {
    u8[0] = (char)(0xE0 | (cp >> 12));
    u8[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u8[2] = (char)(0x80 | (cp & 0x3F));
    *u8len = 3;
  } else {
    u8[0] = (char)(0xF0 | (cp >> 18));
    u8[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u8[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u8[3] = (char)(0x80 | (cp & 0x3F));
    *u8len = 4;
  }
  *pp = p;
  return 1;
}

/* d->p is just past the opening quote. Pushes the string. */
static int dec_string(dec_t *d) {
  const unsigned char *start = d->p, *p = start, *end = d->end, *run;
  luaL_Buffer b;
  for (;;) {
    unsigned c;
    if (p >= end) return dec_fail(d, p, "unterminated string");
    c = *p;
    if (c == '"') {
      lua_pushlstring(d->L, (const char *)start, (size_t)(p - start));
      d->p = p + 1;
      return 1;
    }
    if (c == '\\') break;
    if (c < 0x20) return dec_fail(d, p, "control character in string");
    if (c < 0x80) p++;
    else {
      size_t k = utf8_len(p, end);
      if (!k) return dec_fail(d, p, "invalid UTF-8 in string");
      p += k;
    }
  }
  /* Escapes: the slow path. luaL_Buffer keeps the bytes Lua-owned. */
  luaL_buffinit(d->L, &b);
  luaL_addlstring(&b, (const char *)start, (size_t)(p - start));
  run = p;
  for (;;) {
    unsigned c;
    if (p >= end) return dec_fail(d, p, "unterminated string");
    c = *p;
    if (c == '"' || c == '\\') {
      if (p > run) luaL_addlstring(&b, (const char *)run, (size_t)(p - run));
      if (c == '"') break;
      if (p + 1 >= end) return dec_fail(d, p + 1, "unterminated string");
      switch (p[1]) {
      case '"': luaL_addchar(&b, '"'); break;
      case '\\': luaL_addchar(&b, '\\'); break;
      case '/': luaL_addchar(&b, '/'); break;
      case 'b': luaL_addchar(&b, '\b'); break;
      case 'f': luaL_addchar(&b, '\f'); break;
      case 'n': luaL_addchar(&b, '\n'); break;
      case 'r': luaL_addchar(&b, '\r'); break;
      case 't': luaL_addchar(&b, '\t'); break;
      case 'u': {
        char u8[4];
        size_t n;
        if (!dec_uescape(d, &p, u8, &n)) return 0;
        luaL_addlstring(&b, u8, n);
        run = p;
        continue;
      }
      default:
        return dec_fail(d, p, "invalid escape");
      }
      p += 2;
      run = p;
      continue;
    }
    if (c < 0x20) return dec_fail(d, p, "control character in string");
    if (c < 0x80) p++;
    else {
      size_t k = utf8_len(p, end);
      if (!k) return dec_fail(d, p, "invalid UTF-8 in string");
      p += k;
    }
  }
  luaL_pushresult(&b);
  d->p = p + 1;
  return 1;
}

/* strtod on s[0..n) whatever the C locale: '.' becomes the locale's decimal point. */
static int dec_double(dec_t *d, const unsigned char *s, size_t n, double *out) {
  char local[80], *buf = local, *endp;
  const char *dp = decimal_point();
  size_t dl = strlen(dp), i, j = 0;
  int boxed = 0;
  if (n + dl + 1 > sizeof local) {
    buf = (char *)lua_newuserdata(d->L, n + dl + 1); /* Lua owns it: no leak */
    boxed = 1;
  }
  for (i = 0; i < n; i++) {
    if (s[i] == '.') {
      memcpy(buf + j, dp, dl);
      j += dl;
    } else buf[j++] = (char)s[i];
  }
  buf[j] = '\0';
  errno = 0;
  *out = strtod(buf, &endp);
  if (boxed) lua_pop(d->L, 1);
  if (endp != buf + j) return dec_fail(d, s, "invalid number");
  if (*out > DBL_MAX || *out < -DBL_MAX) return dec_fail(d, s, "number out of range");
  return 1;
}

static int dec_number(dec_t *d) {
  const unsigned char *start = d->p, *p = start, *end = d->end;
  int integral = 1;
  if (*p == '-') p++;
  if (p >= end || !IS_DIGIT(*p)) return dec_fail(d, p, "expected a digit");
  if (*p == '0') {
    p++;
    if (p < end && IS_DIGIT(*p)) return dec_fail(d, p - 1, "leading zero in number");
  } else {
    while (p < end && IS_DIGIT(*p)) p++;
  }
  if (p < end && *p == '.') {
    p++;
    if (p >= end || !IS_DIGIT(*p)) return dec_fail(d, p, "expected a digit after '.'");
    while (p < end && IS_DIGIT(*p)) p++;
    integral = 0;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < end && (*p == '+' || *p == '-')) p++;
    if (p >= end || !IS_DIGIT(*p)) return dec_fail(d, p, "expected a digit in the exponent");
    while (p < end && IS_DIGIT(*p)) p++;
    integral = 0;
  }
  d->p = p;
  if (integral) {
    int64_t v;
    if (parse_i64((const char *)start, (size_t)(p - start), &v) == 1)
      pagsmile_push_int64(d->L, v);
    else /* beyond int64: exactness over convenience */
      lua_pushlstring(d->L, (const char *)start, (size_t)(p - start));
  } else {
    double v;
    if (!dec_double(d, start, (size_t)(p - start), &v)) return 0;
    lua_pushnumber(d->L, (lua_Number)v);
  }
  return 1;
}

static int dec_value(dec_t *d, int depth);

static int is_null(lua_State *L, int idx) {
  return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL;
}

/* At '{' or '[': pushes the new table. 1 when members follow, 0 when the bracket closes at
 * once, -1 (with the error set) when the nesting is too deep. */
static int dec_open(dec_t *d, int depth, char close) {
  if (depth >= DEC_MAX_DEPTH) return dec_fail(d, d->p, "nesting deeper than 64") - 1;
  d->p++;
  lua_newtable(d->L);
  skip_ws(d);
  if (d->p < d->end && *d->p == close) {
    d->p++;
    return 0;
  }
  return 1;
}

/* After a member or an element: 1 when ',' says more follows, 0 at the closing bracket,
 * -1 (with the error set) otherwise. */
static int dec_next(dec_t *d, char close, const char *expected) {
  skip_ws(d);
  if (d->p >= d->end) return dec_fail(d, d->p, "unexpected end of input") - 1;
  if (*d->p == ',' || *d->p == close) return *d->p++ == ',';
  return dec_fail(d, d->p, expected) - 1;
}

/* A duplicate key is refused, not resolved: in an answer, a second "order_no" must never
 * decide whose card it is (issue 9). Null members are held as the null sentinel while the
 * object is read, so that a duplicate of a null member is caught too, and left out at the
 * end. */
static int dec_object(dec_t *d, int depth) {
  lua_State *L = d->L;
  int more = dec_open(d, depth, '}'), nulls = 0;
  while (more > 0) {
    const unsigned char *key_at;
    skip_ws(d);
    if (d->p >= d->end) return dec_fail(d, d->p, "unexpected end of input");
    if (*d->p != '"') return dec_fail(d, d->p, "expected a string key");
    key_at = d->p++;
    if (!dec_string(d)) return 0;
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (!lua_isnil(L, -1)) return dec_fail(d, key_at, "duplicate key");
    lua_pop(L, 1);
    skip_ws(d);
    if (d->p >= d->end || *d->p != ':') return dec_fail(d, d->p, "expected ':'");
    d->p++;
    if (!dec_value(d, depth + 1)) return 0;
    nulls += is_null(L, -1);
    lua_rawset(L, -3);
    more = dec_next(d, '}', "expected ',' or '}'");
  }
  if (more == 0 && nulls > 0) { /* leave the null members out */
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (is_null(L, -1)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_pushnil(L);
        lua_rawset(L, -4); /* clearing a field during traversal is allowed */
      } else {
        lua_pop(L, 1);
      }
    }
  }
  return more == 0;
}

static int dec_array(dec_t *d, int depth) {
  int i = 0, more = dec_open(d, depth, ']');
  while (more > 0) {
    if (i == 0x7fffffff) return dec_fail(d, d->p, "array too long");
    if (!dec_value(d, depth + 1)) return 0;
    lua_rawseti(d->L, -2, ++i);
    more = dec_next(d, ']', "expected ',' or ']'");
  }
  return more == 0;
}

static int dec_literal(dec_t *d, const char *word, size_t n) {
  if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0)
    return dec_fail(d, d->p, "invalid literal");
  d->p += n;
  return 1;
}

static int dec_value(dec_t *d, int depth) {
  lua_State *L = d->L;
  if (!lua_checkstack(L, 4)) return dec_fail(d, d->p, "out of Lua stack space");
  skip_ws(d);
  if (d->p >= d->end) return dec_fail(d, d->p, "unexpected end of input");
  switch (*d->p) {
  case '{':
    return dec_object(d, depth);
  case '[':
    return dec_array(d, depth);
  case '"':
    d->p++;
    return dec_string(d);
  case 't':
    if (!dec_literal(d, "true", 4)) return 0;
    lua_pushboolean(L, 1);
    return 1;
  case 'f':
    if (!dec_literal(d, "false", 5)) return 0;
    lua_pushboolean(L, 0);
    return 1;
  case 'n':
    if (!dec_literal(d, "null", 4)) return 0;
    lua_pushlightuserdata(L, NULL);
    return 1;
  default:
    if (*d->p == '-' || IS_DIGIT(*d->p)) return dec_number(d);
    return dec_fail(d, d->p, "expected a value");
  }
}

int pagsmile_json_decode(lua_State *L, const char *s, size_t n, char *err, size_t errlen) {
  dec_t d;
  int top = lua_gettop(L);
  d.L = L;
  d.s = d.p = (const unsigned char *)s;
  d.end = d.s + n;
  d.err = err;
  d.errlen = errlen;
  if (dec_value(&d, 0)) {
    skip_ws(&d);
    if (d.p == d.end) return 1;
    dec_fail(&d, d.p, "unexpected data after the value");
  }
  lua_settop(L, top);
  return 0;
}

/* Lua functions ----------------------------------------------------------------------- */

/*
 * core.text_length(s) -> characters | nil, "utf8" | "control": the rule for biz_data text
 * (schema.lua), on the same UTF-8 check as the encoder's, so the two cannot disagree. A
 * control character is C0, DEL or C1 (U+0080..U+009F); the first problem found is reported.
 */
static int l_text_length(lua_State *L) {
  size_t n, k;
  const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 1, &n), *end = p + n;
  lua_Integer count = 0;
  for (; p < end; p += k, count++) {
    if (*p < 0x80) {
      if (*p < 0x20 || *p == 0x7F) goto control;
      k = 1;
      continue;
    }
    if (!(k = utf8_len(p, end))) {
      lua_pushnil(L);
      lua_pushliteral(L, "utf8");
      return 2;
    }
    if (k == 2 && p[0] == 0xC2 && p[1] < 0xA0) goto control;
  }
  lua_pushinteger(L, count);
  return 1;
control:
  lua_pushnil(L);
  lua_pushliteral(L, "control");
  return 2;
}

static int l_json_encode(lua_State *L) {
  char err[PAGSMILE_ERRLEN];
  pagsmile_buf *b;
  lua_settop(L, 1);
  b = pagsmile_buf_push(L, 0);
  if (!pagsmile_json_encode(L, 1, b, err, sizeof err)) {
    pagsmile_buf_wipe(b);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushlstring(L, (const char *)b->p, b->len);
  pagsmile_buf_wipe(b);
  return 1;
}

static int l_json_decode(lua_State *L) {
  char err[PAGSMILE_ERRLEN];
  size_t n;
  const char *s;
  luaL_checktype(L, 1, LUA_TSTRING);
  s = lua_tolstring(L, 1, &n);
  if (pagsmile_json_decode(L, s, n, err, sizeof err)) return 1;
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

void pagsmile_json_register(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"json_encode", l_json_encode},
    {"json_decode", l_json_decode},
    {"text_length", l_text_length},
    {"long", l_long},
    {"is_long", l_is_long},
    {"long_value", l_long_value},
    {NULL, NULL},
  };
  if (luaL_newmetatable(L, PAGSMILE_LONG_MT)) {
    lua_pushcfunction(L, long_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, long_eq);
    lua_setfield(L, -2, "__eq");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, fns, 0);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
}
