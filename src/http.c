/*
 * The libcurl easy handle behind transport/curl.lua: one handle per client, reused between
 * requests so live connections stay in its cache (curl_easy_reset keeps them).
 *
 * A cached connection is reused only when it is quiet. libcurl (7.88) checks a cached
 * connection for a FIN before reusing it, not for unread bytes, so an answer a server sent
 * unasked (or late) would be read as the answer to the next request: another order's card.
 * And after fork() parent and child share the cached socket and would read each other's
 * answers. So the handle knows every socket libcurl holds (open/close socket callbacks) and
 * the process that opened them; before a request, if any of them is readable (bytes, EOF or
 * error) or the process changed, the handle is replaced by a fresh one and its connections
 * dropped. In a forked child the inherited sockets are first pointed at /dev/null, so that
 * dropping them (TLS close_notify included) never writes to the parent's connection.
 *
 * No Lua code ever runs inside libcurl: the callbacks below only touch C state reachable
 * from the handle, and everything heap-allocated is owned by a userdata (the handle, or the
 * response buffer), so a Lua error at any point leaks nothing.
 */
#include "core.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define HTTP_MT "pagsmile.issuing.http"
#define DEFAULT_MAX_BODY 1048576
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_CONNECT_TIMEOUT_MS 5000
/* Sockets libcurl may hold at once: the cached connection, a new one, happy-eyeballs tries. */
#define MAX_SOCKETS 8

typedef struct {
  CURL *curl;                  /* NULL once closed */
  struct curl_slist *headers;  /* of the last request; freed by the next one or by close */
  pid_t pid;                   /* the process that made curl's connections */
  curl_socket_t socks[MAX_SOCKETS]; /* every socket libcurl holds open; CURL_SOCKET_BAD = free */
  /* per-request state, written by the callbacks during curl_easy_perform */
  pagsmile_buf *body;
  size_t max_body;
  curl_off_t sent_bytes;
  int in_tunnel_setup, too_big, out_of_memory, resend_refused;
} http_handle;

/* curl_global_init is not thread-safe and must run once per process, never in luaopen. */
static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;
static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static http_handle *check_open(lua_State *L) {
  http_handle *h = (http_handle *)luaL_checkudata(L, 1, HTTP_MT);
  if (!h->curl) luaL_error(L, "pagsmile.issuing: http handle is closed");
  return h;
}

/*
 * In a forked child, points every inherited socket at /dev/null: libcurl then closes its
 * copies without a byte (a TLS close_notify, a shutdown) reaching the parent's connections.
 * Returns 0 if /dev/null cannot be opened.
 */
static int detach_inherited(http_handle *h) {
  struct stat st;
  int i, null_fd = open("/dev/null", O_RDWR);
  if (null_fd < 0) return 0;
  for (i = 0; i < MAX_SOCKETS; i++) {
    /* only a socket: never clobber a descriptor that is no longer libcurl's */
    if (h->socks[i] != CURL_SOCKET_BAD && fstat(h->socks[i], &st) == 0 && S_ISSOCK(st.st_mode))
      dup2(null_fd, h->socks[i]);
  }
  close(null_fd);
  return 1;
}

/* Frees the easy handle and its connections (see the top of this file for a child's). */
static void drop_curl(http_handle *h) {
  int i;
  /* with no /dev/null, a child leaves the inherited handle be rather than risk writing to
     the parent's connections */
  if (h->pid == getpid() || detach_inherited(h)) curl_easy_cleanup(h->curl);
  h->curl = NULL;
  for (i = 0; i < MAX_SOCKETS; i++) h->socks[i] = CURL_SOCKET_BAD;
}

/* close, __gc and __close: idempotent. */
static int http_close(lua_State *L) {
  http_handle *h = (http_handle *)luaL_checkudata(L, 1, HTTP_MT);
  if (h->curl) drop_curl(h);
  curl_slist_free_all(h->headers);
  h->headers = NULL;
  h->body = NULL;
  return 0;
}

static int http_new(lua_State *L) {
  http_handle *h = (http_handle *)lua_newuserdata(L, sizeof *h);
  int i;
  memset(h, 0, sizeof *h);
  for (i = 0; i < MAX_SOCKETS; i++) h->socks[i] = CURL_SOCKET_BAD;
  h->pid = getpid();
  luaL_setmetatable(L, HTTP_MT);
  pthread_once(&global_once, global_init);
  if (global_rc != CURLE_OK) {
    lua_pushnil(L);
    lua_pushfstring(L, "libcurl initialisation failed (curl %d: %s)", (int)global_rc,
                    curl_easy_strerror(global_rc));
    return 2;
  }
  h->curl = curl_easy_init();
  if (!h->curl) {
    lua_pushnil(L);
    lua_pushliteral(L, "could not create a libcurl handle");
    return 2;
  }
  return 1;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud) {
  http_handle *h = (http_handle *)ud;
  size_t len = size * n;
  if (len > h->max_body - h->body->len) {
    h->too_big = 1;
    return 0;
  }
  if (!pagsmile_buf_append(h->body, p, len)) {
    h->out_of_memory = 1;
    return 0;
  }
  return len;
}

/*
 * Whether the request may have left this machine. libcurl reports HEADER_OUT / DATA_OUT to
 * the debug callback right after it handed those bytes to the socket (or to the TLS layer,
 * which only happens once the handshake succeeded); TLS handshake records arrive as
 * SSL_DATA_OUT and do not count. A proxy tunnel's CONNECT request is not our request: its
 * bytes do not count until the proxy answered (HEADER_IN). So sent_bytes > 0 means "our
 * request bytes were written", and == 0 that they certainly were not. Needs CURLOPT_VERBOSE,
 * whose text lines go to this callback (ignored), never to stderr.
 */
static int on_debug(CURL *c, curl_infotype type, char *data, size_t size, void *ud) {
  http_handle *h = (http_handle *)ud;
  (void)c;
  switch (type) {
  case CURLINFO_HEADER_OUT:
    if (size >= 8 && memcmp(data, "CONNECT ", 8) == 0) h->in_tunnel_setup = 1;
    if (!h->in_tunnel_setup) h->sent_bytes += (curl_off_t)size;
    break;
  case CURLINFO_DATA_OUT:
    if (!h->in_tunnel_setup) h->sent_bytes += (curl_off_t)size;
    break;
  case CURLINFO_HEADER_IN:
    h->in_tunnel_setup = 0;
    break;
  default:
    break;
  }
  return 0;
}

/*
 * libcurl silently re-sends a request on a fresh connection when a reused one closes without
 * answering. For a POST that may already have been acted on (and whose request_id must be
 * unique per HTTP request) that is the caller's decision, not libcurl's: once our bytes were
 * written, a new socket is refused and the failure is reported as sent.
 */
static int on_sockopt(void *ud, curl_socket_t fd, curlsocktype purpose) {
  http_handle *h = (http_handle *)ud;
  (void)fd;
  (void)purpose;
  if (h->sent_bytes > 0) {
    h->resend_refused = 1;
    return CURL_SOCKOPT_ERROR;
  }
  return CURL_SOCKOPT_OK;
}

/*
 * libcurl opens and closes every socket through these two, so h->socks is exactly the set of
 * sockets it holds. Sockets are close-on-exec: a program the process starts does not keep
 * the connections open. A full table (never seen: at most a few sockets are open at once)
 * fails the connect, reported as "could not connect".
 */
static curl_socket_t on_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a) {
  http_handle *h = (http_handle *)ud;
  curl_socket_t s;
  int i = 0;
  (void)purpose;
  while (i < MAX_SOCKETS && h->socks[i] != CURL_SOCKET_BAD) i++;
  if (i == MAX_SOCKETS) return CURL_SOCKET_BAD;
  s = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
  h->socks[i] = s;
  return s;
}

static int on_close_socket(void *ud, curl_socket_t s) {
  http_handle *h = (http_handle *)ud;
  int i;
  for (i = 0; i < MAX_SOCKETS; i++)
    if (h->socks[i] == s) h->socks[i] = CURL_SOCKET_BAD;
  return close(s);
}

/* Whether a socket libcurl keeps has something to read (bytes, EOF, an error) before we wrote. */
static int any_readable(http_handle *h) {
  struct pollfd p[MAX_SOCKETS];
  int i, n = 0;
  for (i = 0; i < MAX_SOCKETS; i++) {
    if (h->socks[i] == CURL_SOCKET_BAD) continue;
    p[n].fd = h->socks[i];
    p[n].events = POLLIN;
    p[n].revents = 0;
    n++;
  }
  return n > 0 && poll(p, (nfds_t)n, 0) != 0; /* an error counts as readable: drop them */
}

/*
 * Gives the handle a fresh easy handle when its connections cannot be trusted: bytes waiting
 * on one, or they were made by another process (fork). Dropping the old handle is the one way
 * libcurl offers to close a cached connection; it costs a new connection, which was needed.
 */
static int fresh_if_stale(http_handle *h) {
  CURL *fresh;
  if (h->pid == getpid() && !any_readable(h)) return 1;
  fresh = curl_easy_init();
  if (!fresh) return 0;
  drop_curl(h);
  h->curl = fresh;
  h->pid = getpid();
  return 1;
}

/* Integer option in milliseconds (or bytes); fractions round up so 0.4 ms is not "none". */
static long opt_long(lua_State *L, int opts, const char *name, long def, long min) {
  lua_Number v;
  long r = def;
  if (opts) {
    lua_getfield(L, opts, name);
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "opts.%s must be a number", name);
      v = lua_tonumber(L, -1);
      if (!(v >= 0 && v <= 2147483647.0)) luaL_error(L, "opts.%s out of range", name);
      r = (long)v;
      if ((lua_Number)r < v) r++;
    }
    lua_pop(L, 1);
  }
  return r < min ? min : r;
}

/* A string option; the table at opts anchors it while the request runs (and libcurl copies). */
static const char *opt_string(lua_State *L, int opts, const char *name) {
  const char *s = NULL;
  if (!opts) return NULL;
  lua_getfield(L, opts, name);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "opts.%s must be a string", name);
    s = lua_tostring(L, -1);
  }
  lua_pop(L, 1);
  return s;
}

/* The handle owns the list, so an error half-way (a bad entry) leaks nothing. */
static int build_headers(lua_State *L, http_handle *h, int opts) {
  struct curl_slist *l;
  int i, n;
  if (opts) {
    lua_getfield(L, opts, "headers");
    if (!lua_isnil(L, -1)) {
      luaL_checktype(L, -1, LUA_TTABLE);
      n = (int)lua_rawlen(L, -1);
      for (i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "opts.headers[%d] must be a string", i);
        l = curl_slist_append(h->headers, lua_tostring(L, -1));
        if (!l) return 0;
        h->headers = l;
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  /* no "Expect: 100-continue" round trip: the body goes out with the headers */
  l = curl_slist_append(h->headers, "Expect:");
  if (!l) return 0;
  h->headers = l;
  return 1;
}

/*
 * What a libcurl failure was: the error kind, a text, and the case that errors.lua's retry
 * rule reads (errors.RETRYABLE_CASES). The rule itself is not here: it is the same for every
 * transport and lives in Lua.
 */
typedef struct {
  const char *kind, *text, *cause;
} failure;

static failure classify(CURLcode rc) {
  failure f = { "transport", "request failed", "other" };
  switch (rc) {
  case CURLE_COULDNT_RESOLVE_HOST: f.text = "could not resolve host"; f.cause = "resolve"; break;
  case CURLE_COULDNT_RESOLVE_PROXY: f.text = "could not resolve proxy"; f.cause = "resolve"; break;
  case CURLE_COULDNT_CONNECT: f.text = "could not connect"; f.cause = "connect"; break;
  case CURLE_PROXY: f.text = "proxy handshake failed"; f.cause = "proxy"; break;
  case CURLE_OPERATION_TIMEDOUT: f.kind = "timeout"; f.text = "timed out"; f.cause = "timeout"; break;
  case CURLE_SSL_CONNECT_ERROR: f.text = "TLS handshake failed"; f.cause = "handshake"; break;
  case CURLE_PEER_FAILED_VERIFICATION:
    f.text = "TLS certificate verification failed"; f.cause = "certificate"; break;
  case CURLE_SSL_CACERT_BADFILE: f.text = "could not load the CA file"; f.cause = "ca_file"; break;
  case CURLE_SSL_CERTPROBLEM: case CURLE_SSL_CIPHER: case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED: case CURLE_SSL_CRL_BADFILE: case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH: case CURLE_SSL_INVALIDCERTSTATUS:
    f.text = "TLS setup failed"; f.cause = "certificate"; break;
  case CURLE_URL_MALFORMAT: f.text = "bad URL"; f.cause = "url"; break;
  case CURLE_UNSUPPORTED_PROTOCOL: f.text = "unsupported protocol"; f.cause = "url"; break;
  case CURLE_SEND_ERROR: f.text = "connection failed while sending"; f.cause = "reset"; break;
  case CURLE_RECV_ERROR: f.text = "connection failed while receiving"; f.cause = "reset"; break;
  case CURLE_GOT_NOTHING: f.text = "connection closed without an answer"; f.cause = "reset"; break;
  case CURLE_PARTIAL_FILE: f.text = "truncated answer"; f.cause = "reset"; break;
  case CURLE_HTTP2: case CURLE_HTTP2_STREAM: f.text = "HTTP/2 stream failed"; f.cause = "reset"; break;
  case CURLE_WEIRD_SERVER_REPLY: case CURLE_BAD_CONTENT_ENCODING: case CURLE_TOO_MANY_REDIRECTS:
    f.kind = "protocol"; f.text = "invalid HTTP answer"; f.cause = "answer"; break;
  default: break;
  }
  return f;
}

/*
 * Pushes the plain values of a failure and returns their count:
 *   nil, kind, message, curl_code, sent, cause
 * errors.lua makes the error object (and decides retryable) from them.
 */
static int push_failure_values(lua_State *L, const char *kind, const char *text, CURLcode rc,
                               int sent, const char *cause) {
  lua_pushnil(L);
  lua_pushstring(L, kind);
  lua_pushfstring(L, "%s (curl %d: %s)", text, (int)rc, curl_easy_strerror(rc));
  lua_pushinteger(L, (lua_Integer)rc);
  lua_pushboolean(L, sent);
  lua_pushstring(L, cause);
  return 6;
}

static int push_failure(lua_State *L, http_handle *h, CURLcode rc) {
  failure f = classify(rc);
  int sent = h->sent_bytes > 0;
  char big[64];
  if (h->too_big) {
    f.kind = "protocol";
    snprintf(big, sizeof big, "answer larger than %lu bytes", (unsigned long)h->max_body);
    f.text = big;
    f.cause = "too_big";
  } else if (h->resend_refused) {
    f.text = "connection closed without an answer; not resent";
    f.cause = "not_resent";
  } else if (rc == CURLE_UNSUPPORTED_PROTOCOL && sent) {
    /* libcurl's word for an answer that is not HTTP (it refuses HTTP/0.9): something
       answered our request with bytes that are no HTTP answer */
    f.kind = "protocol";
    f.text = "invalid HTTP answer: no HTTP status line";
    f.cause = "answer";
  }
  return push_failure_values(L, f.kind, f.text, rc, sent, f.cause);
}

#define SETOPT(opt, val)                                                                   \
  do {                                                                                     \
    if ((rc = curl_easy_setopt(c, opt, val)) != CURLE_OK) goto setopt_failed;               \
  } while (0)

/* handle:request(url, body, opts) -> status, body, info | nil, kind, message, curl_code, sent, cause */
static int http_request(lua_State *L) {
  http_handle *h = check_open(L);
  const char *url = luaL_checkstring(L, 2);
  size_t body_len;
  const char *body = luaL_checklstring(L, 3, &body_len);
  int opts = lua_isnoneornil(L, 4) ? 0 : 4;
  long timeout_ms, connect_timeout_ms, max_body, status = 0, connects = 0;
  const char *ca_file, *proxy, *user_agent;
  curl_off_t total_us = 0;
  pagsmile_buf *resp;
  CURL *c;
  CURLcode rc;

  if (opts) luaL_checktype(L, 4, LUA_TTABLE);
  timeout_ms = opt_long(L, opts, "timeout_ms", DEFAULT_TIMEOUT_MS, 1);
  connect_timeout_ms = opt_long(L, opts, "connect_timeout_ms", DEFAULT_CONNECT_TIMEOUT_MS, 1);
  max_body = opt_long(L, opts, "max_body", DEFAULT_MAX_BODY, 0);
  ca_file = opt_string(L, opts, "ca_file");
  proxy = opt_string(L, opts, "proxy");
  user_agent = opt_string(L, opts, "user_agent");

  if (!fresh_if_stale(h)) return luaL_error(L, "pagsmile.issuing: out of memory");
  c = h->curl;
  curl_easy_reset(c);
  curl_slist_free_all(h->headers);
  h->headers = NULL;
  if (!build_headers(L, h, opts)) return luaL_error(L, "pagsmile.issuing: out of memory");
  resp = pagsmile_buf_push(L, 0);

  h->body = resp;
  h->max_body = (size_t)max_body;
  h->sent_bytes = 0;
  h->in_tunnel_setup = h->too_big = h->out_of_memory = h->resend_refused = 0;

  SETOPT(CURLOPT_URL, url);
  SETOPT(CURLOPT_NOSIGNAL, 1L);
  SETOPT(CURLOPT_TIMEOUT_MS, timeout_ms);
  SETOPT(CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms);
  SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
  SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
  SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
  SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
  /* HTTP/1.1 keeps "sent" accounting and connection reuse simple and predictable */
  SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
  SETOPT(CURLOPT_POST, 1L);
  SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
  SETOPT(CURLOPT_POSTFIELDS, body);
  SETOPT(CURLOPT_HTTPHEADER, h->headers);
  SETOPT(CURLOPT_WRITEFUNCTION, on_write);
  SETOPT(CURLOPT_WRITEDATA, (void *)h);
  SETOPT(CURLOPT_DEBUGFUNCTION, on_debug);
  SETOPT(CURLOPT_DEBUGDATA, (void *)h);
  SETOPT(CURLOPT_VERBOSE, 1L);
  SETOPT(CURLOPT_SOCKOPTFUNCTION, on_sockopt);
  SETOPT(CURLOPT_SOCKOPTDATA, (void *)h);
  SETOPT(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
  SETOPT(CURLOPT_OPENSOCKETDATA, (void *)h);
  SETOPT(CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
  SETOPT(CURLOPT_CLOSESOCKETDATA, (void *)h);
  if (ca_file) SETOPT(CURLOPT_CAINFO, ca_file);
  if (proxy) SETOPT(CURLOPT_PROXY, proxy);
  if (user_agent) SETOPT(CURLOPT_USERAGENT, user_agent);

  rc = curl_easy_perform(c);
  h->body = NULL;
  if (h->out_of_memory) return luaL_error(L, "pagsmile.issuing: out of memory");
  if (rc != CURLE_OK) return push_failure(L, h, rc);

  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects);
  curl_easy_getinfo(c, CURLINFO_TOTAL_TIME_T, &total_us);
  lua_pushinteger(L, (lua_Integer)status);
  lua_pushlstring(L, resp->p ? (const char *)resp->p : "", resp->len);
  pagsmile_buf_wipe(resp);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)connects);
  lua_setfield(L, -2, "connects");
  lua_pushnumber(L, (lua_Number)total_us / 1000.0);
  lua_setfield(L, -2, "time_ms");
  return 3;

setopt_failed:
  h->body = NULL;
  return push_failure_values(L, "transport", "could not set a libcurl option", rc, 0, "setup");
}

static int curl_version_string(lua_State *L) {
  lua_pushstring(L, curl_version_info(CURLVERSION_NOW)->version);
  return 1;
}

static const luaL_Reg http_methods[] = {
  { "request", http_request },
  { "close", http_close },
  { NULL, NULL },
};

void pagsmile_http_register(lua_State *L) {
  pagsmile_handle_metatable(L, HTTP_MT, http_methods, http_close);
  lua_pop(L, 1);
  lua_pushcfunction(L, http_new);
  lua_setfield(L, -2, "http");
  lua_pushcfunction(L, curl_version_string);
  lua_setfield(L, -2, "curl_version");
}
