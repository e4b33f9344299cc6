/*
 * Keys, keygen, seal and unseal: the encryption of SPEC.md §3, all of it in this file
 * (envelope.lua reads the answer around it).
 *
 * Memory discipline: every buffer that holds plaintext or key bytes is either a fixed array
 * on the C stack (wiped before return) or a pagsmile_buf owned by a Lua userdata (wiped when
 * it grows and at __gc). OpenSSL objects are freed before anything that can raise a Lua
 * error runs, so no error longjmps over them.
 */
#include "core.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <string.h>

/* The crypto parameters of SPEC.md §3, in one place. */
#define RSA_BITS 2048           /* both key pairs */
#define RSA_PADDING RSA_PKCS1_PADDING
#define AES_KEY_LEN 16          /* printable [A-Za-z0-9] characters: see random_aes_key */
#define IV_LEN 16               /* uppercase hex of 8 random bytes, sent as the prefix */
#define AES_BLOCK 16
#define RSA_MAX_BYTES 1024      /* room for any sane modulus (8192 bits) */

static const char ALNUM[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
static const char HEX[] = "0123456789ABCDEF";

#define KEY_MT "pagsmile.issuing.key"
#define SESSION_MT "pagsmile.issuing.session"

typedef struct {
  EVP_PKEY *pkey;
  EVP_PKEY_CTX *ctx; /* made once per key: encrypt for public keys, decrypt for private */
  int is_private;
} key_ud;

typedef struct {
  unsigned char key[32];
  size_t len;
} session_ud;

/* ---------------------------------------------------------------------------------------
 * Errors: format a message, drain OpenSSL's queue so no stale error reaches the next call.
 */
static int fail(char *err, size_t errlen, const char *msg) {
  ERR_clear_error();
  if (err && errlen) {
    strncpy(err, msg, errlen - 1);
    err[errlen - 1] = '\0';
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------
 * Base64, standard alphabet with padding. Decoding skips ASCII whitespace (Java's MIME
 * encoder and dashboards break lines) and rejects anything else that is not the alphabet.
 */
#define B64_LEN(n) (4 * (((n) + 2) / 3))
static size_t b64_encoded_len(size_t n) { return B64_LEN(n); }

static void b64_encode(const unsigned char *in, size_t n, char *out) {
  static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t i = 0, o = 0;
  for (; i + 2 < n; i += 3) {
    unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
    out[o++] = A[v >> 18]; out[o++] = A[(v >> 12) & 63];
    out[o++] = A[(v >> 6) & 63]; out[o++] = A[v & 63];
  }
  if (i < n) {
    unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0);
    out[o++] = A[v >> 18]; out[o++] = A[(v >> 12) & 63];
    out[o++] = i + 1 < n ? A[(v >> 6) & 63] : '=';
    out[o++] = '=';
  }
}

static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Decodes into out, at most cap bytes; returns the length, or -1 if malformed or too long. */
static long b64_decode(const char *s, size_t n, unsigned char *out, size_t cap) {
  unsigned acc = 0;
  int bits = 0, pad = 0;
  size_t i, quads = 0;
  long o = 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    int v;
    if (is_space(c)) continue;
    quads++;
    if (c == '=') { pad++; continue; }
    if (pad) return -1; /* data after padding */
    if ((v = b64_value(c)) < 0) return -1;
    acc = (acc << 6) | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if ((size_t)o >= cap) return -1;
      out[o++] = (unsigned char)(acc >> bits);
    }
  }
  if (quads == 0 || quads % 4 != 0 || pad > 2) return -1;
  if ((acc & ((1u << bits) - 1)) != 0) return -1; /* non-canonical trailing bits */
  return o;
}

/* ---------------------------------------------------------------------------------------
 * Random material.
 */
static int random_aes_key(unsigned char key[AES_KEY_LEN]) {
  unsigned char r[64];
  size_t have = 0, i;
  /* Rejection sampling keeps the 62 characters uniform: 248 = 4 * 62. */
  while (have < AES_KEY_LEN) {
    if (RAND_bytes(r, sizeof r) != 1) return 0;
    for (i = 0; i < sizeof r && have < AES_KEY_LEN; i++)
      if (r[i] < 248) key[have++] = (unsigned char)ALNUM[r[i] % 62];
  }
  OPENSSL_cleanse(r, sizeof r);
  return 1;
}

static int random_iv(unsigned char iv[IV_LEN]) {
  unsigned char r[IV_LEN / 2];
  size_t i;
  if (RAND_bytes(r, sizeof r) != 1) return 0;
  for (i = 0; i < sizeof r; i++) {
    iv[2 * i] = (unsigned char)HEX[r[i] >> 4];
    iv[2 * i + 1] = (unsigned char)HEX[r[i] & 15];
  }
  return 1;
}

static int is_hex(const unsigned char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'))) return 0;
  }
  return 1;
}

/* core.request_id() → a random UUID (version 4), a fresh one for every HTTP attempt. */
static int l_request_id(lua_State *L) {
  unsigned char r[16];
  char out[36];
  size_t i, o = 0;
  if (RAND_bytes(r, sizeof r) != 1) {
    fail(NULL, 0, NULL);
    return luaL_error(L, "pagsmile.issuing: the random generator failed");
  }
  r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
  r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
  for (i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
    out[o++] = (char)(HEX[r[i] >> 4] | 0x20); /* lower case: '0'-'9' are unchanged by | 0x20 */
    out[o++] = (char)(HEX[r[i] & 15] | 0x20);
  }
  lua_pushlstring(L, out, sizeof out);
  return 1;
}

/* ---------------------------------------------------------------------------------------
 * AES-CBC with PKCS#7 padding, key length 16, 24 or 32.
 */
static const EVP_CIPHER *aes_cbc(size_t keylen) {
  switch (keylen) {
    case 16: return EVP_aes_128_cbc();
    case 24: return EVP_aes_192_cbc();
    case 32: return EVP_aes_256_cbc();
    default: return NULL;
  }
}

/* out must have room for n + AES_BLOCK bytes. Returns the output length, or -1. */
static long aes_crypt(int enc, const unsigned char *key, size_t keylen, const unsigned char *iv,
                      const unsigned char *in, size_t n, unsigned char *out) {
  const EVP_CIPHER *cipher = aes_cbc(keylen);
  EVP_CIPHER_CTX *ctx;
  int l1 = 0, l2 = 0, ok;
  if (!cipher || n > (size_t)0x7fffffff - AES_BLOCK) return -1;
  if (!(ctx = EVP_CIPHER_CTX_new())) return -1;
  ok = EVP_CipherInit_ex(ctx, cipher, NULL, key, iv, enc) == 1 &&
       EVP_CipherUpdate(ctx, out, &l1, in, (int)n) == 1 &&
       EVP_CipherFinal_ex(ctx, out + l1, &l2) == 1;
  EVP_CIPHER_CTX_free(ctx);
  return ok ? (long)l1 + l2 : -1;
}

/* ---------------------------------------------------------------------------------------
 * Keys. Accepted forms (SPEC.md §3): PEM with SPKI / PKCS#1 public or PKCS#8 / PKCS#1
 * private keys, or the bare Base64 DER that dashboards show, whitespace allowed.
 */
static key_ud *check_key(lua_State *L, int idx) {
  key_ud *k = (key_ud *)luaL_checkudata(L, idx, KEY_MT);
  if (!k->pkey) luaL_error(L, "pagsmile.issuing: key is closed");
  return k;
}

static int key_close(lua_State *L) {
  key_ud *k = (key_ud *)luaL_checkudata(L, 1, KEY_MT);
  if (k->ctx) EVP_PKEY_CTX_free(k->ctx);
  if (k->pkey) EVP_PKEY_free(k->pkey);
  k->ctx = NULL;
  k->pkey = NULL;
  return 0;
}

static int key_bits(lua_State *L) {
  lua_pushinteger(L, EVP_PKEY_get_bits(check_key(L, 1)->pkey));
  return 1;
}

static int key_is_private(lua_State *L) {
  lua_pushboolean(L, check_key(L, 1)->is_private);
  return 1;
}

static int key_tostring(lua_State *L) {
  key_ud *k = (key_ud *)luaL_checkudata(L, 1, KEY_MT);
  if (!k->pkey)
    lua_pushliteral(L, "pagsmile.issuing key (closed)");
  else
    lua_pushfstring(L, "pagsmile.issuing key (RSA-%d %s)", EVP_PKEY_get_bits(k->pkey),
                    k->is_private ? "private" : "public");
  return 1;
}

/* Parses DER as the wanted kind. *other is set when it parses as the other kind instead. */
static EVP_PKEY *parse_der(const unsigned char *der, long n, int want_private, int *other) {
  const unsigned char *p;
  EVP_PKEY *pk = NULL;
  *other = 0;
  /* The forms are tried in turn; a failed try must not leave errors in the thread's queue
   * (nginx reports them later as "stale global SSL error" on an unrelated handshake). */
  ERR_set_mark();
  if (want_private) {
    p = der;
    pk = d2i_AutoPrivateKey(NULL, &p, n); /* PKCS#8 or PKCS#1 RSAPrivateKey */
    if (pk && p != der + n) { EVP_PKEY_free(pk); pk = NULL; }
    if (!pk) {
      p = der;
      EVP_PKEY *o = d2i_PUBKEY(NULL, &p, n);
      if (!o) { p = der; o = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, n); }
      if (o) { *other = 1; EVP_PKEY_free(o); }
    }
  } else {
    p = der;
    pk = d2i_PUBKEY(NULL, &p, n); /* SPKI */
    if (pk && p != der + n) { EVP_PKEY_free(pk); pk = NULL; }
    if (!pk) {
      p = der;
      pk = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, n); /* PKCS#1 RSAPublicKey */
      if (pk && p != der + n) { EVP_PKEY_free(pk); pk = NULL; }
    }
    if (!pk) {
      p = der;
      EVP_PKEY *o = d2i_AutoPrivateKey(NULL, &p, n);
      if (o) { *other = 1; EVP_PKEY_free(o); }
    }
  }
  ERR_pop_to_mark();
  return pk;
}

/*
 * text → EVP_PKEY of the wanted kind, or NULL with a message. The DER bytes of a private
 * key pass through der, a buffer owned by the caller's userdata, and are wiped there.
 */
static EVP_PKEY *parse_key(const char *text, size_t n, int want_private, pagsmile_buf *der,
                           char *err, size_t errlen) {
  const char *wrong = want_private
                          ? "is a public key; the merchant private key belongs here"
                          : "is a private key; a public key belongs here";
  EVP_PKEY *pk = NULL;
  int other = 0;
  long dn;
  if (strstr(text, "-----BEGIN ")) { /* Lua strings end in NUL */
    BIO *bio = BIO_new_mem_buf(text, (int)n);
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long len = 0;
    if (!bio) { fail(err, errlen, "out of memory"); return NULL; }
    if (PEM_read_bio(bio, &name, &header, &data, &len) != 1) {
      BIO_free(bio);
      fail(err, errlen, "is not a valid PEM block (bad Base64 or truncated)");
      return NULL;
    }
    BIO_free(bio);
    if (strstr(name, "ENCRYPTED")) {
      fail(err, errlen, "is an encrypted private key; give it unencrypted (PKCS#8 or PKCS#1)");
    } else if (strcmp(name, "PUBLIC KEY") && strcmp(name, "RSA PUBLIC KEY") &&
               strcmp(name, "PRIVATE KEY") && strcmp(name, "RSA PRIVATE KEY")) {
      fail(err, errlen, "is a PEM block of an unsupported type (want PUBLIC KEY, RSA PUBLIC KEY, "
                        "PRIVATE KEY or RSA PRIVATE KEY)");
    } else {
      int pem_private = strstr(name, "PRIVATE") != NULL;
      if (pem_private != want_private) {
        fail(err, errlen, wrong);
      } else {
        pk = parse_der(data, len, want_private, &other);
        if (!pk) fail(err, errlen, "is a PEM block whose key data is malformed or truncated");
      }
    }
    OPENSSL_cleanse(data, (size_t)len);
    OPENSSL_free(data);
    OPENSSL_free(name);
    OPENSSL_free(header);
  } else {
    if (!pagsmile_buf_reserve(der, n)) { fail(err, errlen, "out of memory"); return NULL; }
    dn = b64_decode(text, n, der->p, der->cap);
    if (dn <= 0) {
      fail(err, errlen, "is neither PEM nor valid Base64 DER");
    } else {
      der->len = (size_t)dn;
      pk = parse_der(der->p, dn, want_private, &other);
      if (!pk) fail(err, errlen, other ? wrong : "is Base64 but not a DER-encoded RSA key (wrong or truncated?)");
    }
    pagsmile_buf_wipe(der);
  }
  if (!pk) return NULL;
  if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
    EVP_PKEY_free(pk);
    fail(err, errlen, "is not an RSA key");
    return NULL;
  }
  if (EVP_PKEY_get_bits(pk) != RSA_BITS) {
    char msg[96];
    snprintf(msg, sizeof msg, "is a %d-bit RSA key; the API needs %d-bit", EVP_PKEY_get_bits(pk),
             RSA_BITS);
    EVP_PKEY_free(pk);
    fail(err, errlen, msg);
    return NULL;
  }
  return pk;
}

/* Prepares the per-key context once so the per-request path only encrypts or decrypts. */
static EVP_PKEY_CTX *key_ctx(EVP_PKEY *pk, int is_private) {
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pk, NULL);
  if (!ctx) return NULL;
  if ((is_private ? EVP_PKEY_decrypt_init(ctx) : EVP_PKEY_encrypt_init(ctx)) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PADDING) != 1) {
    EVP_PKEY_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

static int load_key(lua_State *L, int want_private) {
  size_t n;
  const char *text = luaL_checklstring(L, 1, &n);
  char err[PAGSMILE_ERRLEN];
  key_ud *k;
  pagsmile_buf *der;
  EVP_PKEY *pk;
  /* Metatable first, resource second: the userdata is collected whatever happens next. */
  k = (key_ud *)lua_newuserdata(L, sizeof *k);
  k->pkey = NULL;
  k->ctx = NULL;
  k->is_private = want_private;
  luaL_getmetatable(L, KEY_MT);
  lua_setmetatable(L, -2);
  der = pagsmile_buf_push(L, 0);
  pk = parse_key(text, n, want_private, der, err, sizeof err);
  lua_pop(L, 1); /* der: already wiped */
  if (!pk) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  k->pkey = pk;
  if (!(k->ctx = key_ctx(pk, want_private))) {
    fail(NULL, 0, NULL);
    lua_pushnil(L);
    lua_pushliteral(L, "could not prepare the RSA context");
    return 2;
  }
  return 1;
}

static int l_public_key(lua_State *L) { return load_key(L, 0); }
static int l_private_key(lua_State *L) { return load_key(L, 1); }

/* core.keygen() → private PEM (PKCS#8), public PEM (SPKI), public bare Base64 (SPKI DER). */
static int l_keygen(lua_State *L) {
  EVP_PKEY *pk;
  BIO *priv = NULL, *pub = NULL;
  unsigned char *der = NULL;
  int dlen;
  char *p1, *p2;
  long n1, n2;
  pagsmile_buf *out = pagsmile_buf_push(L, 0);
  pk = EVP_RSA_gen(RSA_BITS);
  if (!pk) { fail(NULL, 0, NULL); return luaL_error(L, "pagsmile.issuing: RSA key generation failed"); }
  priv = BIO_new(BIO_s_secmem());
  pub = BIO_new(BIO_s_mem());
  dlen = i2d_PUBKEY(pk, &der);
  if (!priv || !pub || dlen <= 0 ||
      PEM_write_bio_PrivateKey(priv, pk, NULL, NULL, 0, NULL, NULL) != 1 ||
      PEM_write_bio_PUBKEY(pub, pk) != 1) {
    BIO_free(priv); BIO_free(pub); OPENSSL_free(der); EVP_PKEY_free(pk);
    fail(NULL, 0, NULL);
    return luaL_error(L, "pagsmile.issuing: could not write the new key");
  }
  EVP_PKEY_free(pk);
  n1 = BIO_get_mem_data(priv, &p1);
  n2 = BIO_get_mem_data(pub, &p2);
  /* Copy out of OpenSSL's objects before anything can raise. */
  if (!pagsmile_buf_reserve(out, (size_t)n1 + (size_t)n2 + b64_encoded_len((size_t)dlen))) {
    BIO_free(priv); BIO_free(pub); OPENSSL_free(der);
    return luaL_error(L, "pagsmile.issuing: out of memory");
  }
  memcpy(out->p, p1, (size_t)n1);
  memcpy(out->p + n1, p2, (size_t)n2);
  b64_encode(der, (size_t)dlen, (char *)out->p + n1 + n2);
  BIO_free(priv); /* a secure-heap BIO: cleared on free */
  BIO_free(pub);
  OPENSSL_free(der);
  lua_pushlstring(L, (const char *)out->p, (size_t)n1);
  lua_pushlstring(L, (const char *)out->p + n1, (size_t)n2);
  lua_pushlstring(L, (const char *)out->p + n1 + n2, b64_encoded_len((size_t)dlen));
  pagsmile_buf_wipe(out);
  return 3;
}

/* ---------------------------------------------------------------------------------------
 * Seal: value → random_key, biz_data (SPEC.md §3 "Sending").
 * core.seal(public_key, value [, aes_key, iv]) → random_key, biz_data, session
 * The optional fixed key and IV exist for known-answer tests.
 */
static int l_seal(lua_State *L) {
  key_ud *k = check_key(L, 1);
  unsigned char key[AES_KEY_LEN], iv[IV_LEN], rk[RSA_MAX_BYTES];
  size_t rklen = sizeof rk, fixed_len;
  const char *fixed;
  char err[PAGSMILE_ERRLEN];
  pagsmile_buf *plain, *out;
  session_ud *s;
  long clen;
  int ok;
  if (k->is_private) return luaL_argerror(L, 1, "a public key is needed to seal");
  luaL_checkany(L, 2);
  lua_settop(L, 4);
  if (!lua_isnil(L, 3)) {
    luaL_checklstring(L, 3, &fixed_len);
    luaL_argcheck(L, fixed_len == AES_KEY_LEN, 3, "the AES key must be 16 bytes");
  }
  if (!lua_isnil(L, 4)) {
    luaL_checklstring(L, 4, &fixed_len);
    luaL_argcheck(L, fixed_len == IV_LEN, 4, "the IV must be 16 characters");
  }
  plain = pagsmile_buf_push(L, 512);                       /* 5 */
  out = pagsmile_buf_push(L, 0);                           /* 6 */
  s = (session_ud *)lua_newuserdata(L, sizeof *s);         /* 7 */
  memset(s, 0, sizeof *s);
  luaL_getmetatable(L, SESSION_MT);
  lua_setmetatable(L, -2);

  if (!pagsmile_json_encode(L, 2, plain, err, sizeof err)) {
    pagsmile_buf_wipe(plain);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  if (!lua_isnil(L, 3)) {
    fixed = lua_tolstring(L, 3, &fixed_len);
    memcpy(key, fixed, AES_KEY_LEN);
  } else if (!random_aes_key(key)) {
    pagsmile_buf_wipe(plain);
    fail(NULL, 0, NULL);
    return luaL_error(L, "pagsmile.issuing: the random generator failed");
  }
  if (!lua_isnil(L, 4)) {
    fixed = lua_tolstring(L, 4, &fixed_len);
    memcpy(iv, fixed, IV_LEN);
  } else if (!random_iv(iv)) {
    OPENSSL_cleanse(key, sizeof key);
    pagsmile_buf_wipe(plain);
    fail(NULL, 0, NULL);
    return luaL_error(L, "pagsmile.issuing: the random generator failed");
  }

  /* Ciphertext goes to the tail of out; its Base64 to the front, after the IV. */
  {
    size_t ctmax = plain->len + AES_BLOCK;
    size_t b64max = b64_encoded_len(ctmax);
    ok = pagsmile_buf_reserve(out, IV_LEN + b64max + ctmax);
    if (ok) {
      unsigned char *ct = out->p + IV_LEN + b64max;
      clen = aes_crypt(1, key, AES_KEY_LEN, iv, plain->p, plain->len, ct);
      ok = clen > 0;
      if (ok) {
        memcpy(out->p, iv, IV_LEN);
        b64_encode(ct, (size_t)clen, (char *)out->p + IV_LEN);
        out->len = IV_LEN + b64_encoded_len((size_t)clen);
      }
    }
  }
  pagsmile_buf_wipe(plain);
  if (ok) ok = EVP_PKEY_encrypt(k->ctx, rk, &rklen, key, AES_KEY_LEN) == 1;
  memcpy(s->key, key, AES_KEY_LEN);
  s->len = AES_KEY_LEN;
  OPENSSL_cleanse(key, sizeof key);
  if (!ok) {
    fail(NULL, 0, NULL);
    lua_pushnil(L);
    lua_pushliteral(L, "encryption failed");
    return 2;
  }
  {
    char rk64[B64_LEN(RSA_MAX_BYTES)];
    b64_encode(rk, rklen, rk64);
    lua_pushlstring(L, rk64, b64_encoded_len(rklen));     /* random_key */
  }
  lua_pushlstring(L, (const char *)out->p, out->len);     /* biz_data */
  lua_pushvalue(L, 7);                                    /* session */
  return 3;
}

/*
 * session:wipe(): forgets the request's AES key once its answer is read (issue 11 item 6),
 * rather than when the garbage collector gets to it; __gc does the same for a call that
 * raised. A wiped session opens nothing ("comes without random_key").
 */
static int session_wipe(lua_State *L) {
  session_ud *s = (session_ud *)luaL_checkudata(L, 1, SESSION_MT);
  OPENSSL_cleanse(s->key, sizeof s->key);
  s->len = 0;
  return 0;
}

/* ---------------------------------------------------------------------------------------
 * Unseal: random_key + IV-prefixed ciphertext → decoded JSON value (pushed), or 0 and err.
 * Either random_key (decrypted with the private key) or a session's key gives the AES key.
 */
#define UNDECRYPTABLE \
  "random_key and data do not decrypt to JSON with the merchant private key (wrong key pair, " \
  "or altered in transit)"

/* Constant-time choice: a where mask is all ones, b where it is zero. */
static void ct_select(unsigned char *out, const unsigned char *a, const unsigned char *b,
                      size_t n, unsigned char mask) {
  size_t i;
  for (i = 0; i < n; i++) out[i] = (unsigned char)((a[i] & mask) | (b[i] & (unsigned char)~mask));
}

/*
 * The AES key of an answer: from random_key with the private key, else the request's own.
 * Implicit rejection: a random_key that does not decrypt to an AES key goes on with a random
 * key, chosen without a branch, so it fails exactly like a wrong-but-well-formed key (bad
 * AES padding) and in the same time. A callback endpoint then cannot serve as a PKCS#1 v1.5
 * padding oracle (OpenSSL 3.0, Debian's, does not do this itself).
 */
static int answer_key(key_ud *k, const char *rk64, size_t rk64len, session_ud *session,
                      unsigned char key[RSA_MAX_BYTES], size_t *keylen, char *err, size_t errlen) {
  unsigned char rk[RSA_MAX_BYTES], rnd[AES_KEY_LEN], good;
  size_t outlen = RSA_MAX_BYTES;
  long rklen;
  if (!(rk64 && rk64len)) {
    if (!(session && session->len)) return fail(err, errlen, "encrypted data comes without random_key");
    memcpy(key, session->key, session->len);
    *keylen = session->len;
    return 1;
  }
  if (!k) return fail(err, errlen, "random_key present but no private key to decrypt it");
  if (b64_encoded_len(RSA_MAX_BYTES) < rk64len) return fail(err, errlen, "random_key is too long");
  rklen = b64_decode(rk64, rk64len, rk, sizeof rk);
  if (rklen <= 0) return fail(err, errlen, "random_key is not valid Base64");
  if ((size_t)rklen != (size_t)EVP_PKEY_get_size(k->pkey))
    return fail(err, errlen, "random_key has the wrong length for the key (truncated?)");
  if (RAND_bytes(rnd, sizeof rnd) != 1) return fail(err, errlen, "the random generator failed");
  good = (unsigned char)(EVP_PKEY_decrypt(k->ctx, key, &outlen, rk, (size_t)rklen) == 1);
  good &= (unsigned char)(aes_cbc(outlen) != NULL);
  ERR_clear_error();
  good = (unsigned char)(0u - good); /* 0xff or 0 */
  ct_select(key, key, rnd, AES_KEY_LEN, good);
  *keylen = (outlen & (size_t)(signed char)good) | (AES_KEY_LEN & ~(size_t)(signed char)good);
  OPENSSL_cleanse(rnd, sizeof rnd);
  return 1;
}

/* Decrypts data into buf and pushes the JSON value: 1, or 0 with nothing pushed. */
static int unseal_into(lua_State *L, pagsmile_buf *buf, key_ud *k, const char *rk64,
                       size_t rk64len, session_ud *session, const char *data, size_t n,
                       char *err, size_t errlen) {
  unsigned char key[RSA_MAX_BYTES];
  size_t keylen = 0;
  long ctlen, plen;
  int ok;
  if (!answer_key(k, rk64, rk64len, session, key, &keylen, err, errlen)) {
    OPENSSL_cleanse(key, sizeof key);
    return 0;
  }
  /* Nothing below may raise a Lua error until the key is wiped. */
  if (n < IV_LEN || !is_hex((const unsigned char *)data, IV_LEN)) {
    OPENSSL_cleanse(key, sizeof key);
    return fail(err, errlen, "encrypted data does not start with a 16-character hex IV");
  }
  ok = pagsmile_buf_reserve(buf, 2 * (n - IV_LEN) + AES_BLOCK);
  /* Ciphertext at the back half, plaintext at the front. */
  ctlen = ok ? b64_decode(data + IV_LEN, n - IV_LEN, buf->p + (n - IV_LEN), buf->cap - (n - IV_LEN)) : -1;
  if (!ok) {
    fail(err, errlen, "out of memory");
  } else if (ctlen <= 0) {
    fail(err, errlen, "encrypted data is not valid Base64 after the IV");
    ok = 0;
  } else if (ctlen % AES_BLOCK) {
    fail(err, errlen, "encrypted data is not a whole number of AES blocks (truncated?)");
    ok = 0;
  } else {
    plen = aes_crypt(0, key, keylen, (const unsigned char *)data, buf->p + (n - IV_LEN),
                     (size_t)ctlen, buf->p);
    if (plen < 0) {
      fail(err, errlen, UNDECRYPTABLE);
      ok = 0;
    } else {
      buf->len = (size_t)plen;
    }
  }
  OPENSSL_cleanse(key, sizeof key);
  if (ok) {
    /*
     * Same message as bad padding, and no position: telling "padding was right but the
     * plaintext is not JSON" apart would be a CBC padding oracle on a captured answer.
     */
    char jerr[PAGSMILE_ERRLEN];
    ok = pagsmile_json_decode(L, (const char *)buf->p, buf->len, jerr, sizeof jerr);
    OPENSSL_cleanse(jerr, sizeof jerr);
    if (!ok) fail(err, errlen, UNDECRYPTABLE);
  }
  return ok;
}

static int unseal(lua_State *L, key_ud *k, const char *rk64, size_t rk64len, session_ud *session,
                  const char *data, size_t n, char *err, size_t errlen) {
  /* Made first: it is the one step that can raise (out of memory), and no key exists yet. */
  pagsmile_buf *buf = pagsmile_buf_push(L, 0);
  int ok = unseal_into(L, buf, k, rk64, rk64len, session, data, n, err, errlen);
  pagsmile_buf_wipe(buf);
  if (ok)
    lua_remove(L, -2); /* buf, under the value */
  else
    lua_pop(L, 1);
  return ok;
}

static key_ud *opt_private_key(lua_State *L, int idx) {
  key_ud *k;
  if (lua_isnoneornil(L, idx)) return NULL;
  k = check_key(L, idx);
  if (!k->is_private) luaL_argerror(L, idx, "a private key is needed to decrypt");
  return k;
}

/* core.unseal(private_key|nil, random_key|nil, data [, session]) → value | nil, message */
static int l_unseal(lua_State *L) {
  key_ud *k = opt_private_key(L, 1);
  size_t rklen = 0, n;
  const char *rk = luaL_optlstring(L, 2, NULL, &rklen);
  const char *data = luaL_checklstring(L, 3, &n);
  session_ud *s = lua_isnoneornil(L, 4) ? NULL : (session_ud *)luaL_checkudata(L, 4, SESSION_MT);
  char err[PAGSMILE_ERRLEN];
  if (unseal(L, k, rk, rklen, s, data, n, err, sizeof err)) return 1;
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

void pagsmile_crypto_register(lua_State *L) {
  static const luaL_Reg key_methods[] = {
      {"bits", key_bits}, {"is_private", key_is_private}, {"close", key_close}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"public_key", l_public_key}, {"private_key", l_private_key},
                                   {"keygen", l_keygen},         {"seal", l_seal},
                                   {"unseal", l_unseal},         {"request_id", l_request_id},
                                   {NULL, NULL}};
  pagsmile_handle_metatable(L, KEY_MT, key_methods, key_close);
  lua_pushcfunction(L, key_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  if (luaL_newmetatable(L, SESSION_MT)) {
    lua_pushcfunction(L, session_wipe);
    lua_setfield(L, -2, "__gc");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, session_wipe);
    lua_setfield(L, -2, "wipe");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, funcs, 0);
}
