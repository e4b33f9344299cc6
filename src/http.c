/*
 * The libcurl engine behind transport/curl.lua: one multi handle per client, many transfers
 * in flight, each named by a small integer (its slot). A slot keeps its easy handle for the
 * multi's life, so the client's settings are set once per slot and a request sets only what
 * changes; the connection cache is the multi's, shared by every slot.
 *
 * A cached connection is reused only when it is quiet. libcurl (7.88) checks a cached
 * connection for a FIN before reusing it, not for unread bytes, so an answer a server sent
 * unasked (or late) would be read as the answer to the next request: another order's card.
 * So the multi knows every socket libcurl holds (open/close socket callbacks), and just
 * before a request is written on a reused connection (libcurl's pre-request callback) that
 * connection's socket is polled: if it is readable (bytes, EOF or error), the request is
 * aborted before a byte of it left and started again, transparently, on a new connection.
 * After fork() parent and child share the cached sockets and would read each other's
 * answers: the child's first use of the multi points the inherited sockets at /dev/null,
 * so that dropping them (TLS close_notify included) never writes to the parent's
 * connections, and starts over with a new multi handle and new easy handles.
 *
 * No Lua code ever runs inside libcurl: the callbacks touch only the C state of the multi
 * and its transfers, all of it malloc'd and owned by the multi's userdata (freed by close
 * or __gc), and nothing raises while libcurl holds memory of ours it has not given back.
 */
#include "core.h"

#include <curl/curl.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#if LIBCURL_VERSION_NUM < 0x075500
#error "libcurl 7.85 or newer is needed (CURLOPT_PREREQFUNCTION, CURLOPT_PROTOCOLS_STR)"
#endif

#define MULTI_MT "pagsmile.issuing.multi"
#define DEFAULT_MAX_BODY 1048576
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_CONNECT_TIMEOUT_MS 5000
/* Kept-alive connections: one per transfer for a client running 256 at once, so that a
   batch's connections all survive until the next batch. */
#define MAX_CONNECTIONS 256L
/* A slot keeps its answer buffer for the next request up to this size (wiped either way). */
#define KEEP_ANSWER_BYTES 65536

/* One end of a TCP connection, as the kernel and libcurl both can name it. */
typedef struct {
  int family; /* 0 = unknown */
  unsigned short port;
  unsigned char addr[16];
} endpoint;

/* A socket libcurl holds; its ends are read once it is connected and kept. */
typedef struct {
  curl_socket_t fd;
  endpoint local, peer;
} tracked_socket;

enum { SLOT_FREE, SLOT_RUNNING, SLOT_DONE };

struct multi_ud;

typedef struct {
  struct multi_ud *m;
  CURL *easy; /* made at the slot's first request; NULL again after a fork */
  int id, state, in_multi, queued;
  /* the request: our copy of the body, and what was last set on the easy handle */
  char *body;
  size_t body_cap;
  char *url;
  struct curl_slist *headers; /* ends with "Expect:" */
  long timeout_ms, connect_timeout_ms, fresh_connect;
  /* the outcome */
  pagsmile_buf answer;
  CURLcode rc;
  long status, connects;
  curl_off_t total_us;
  /* set by the callbacks during curl_multi_perform */
  int sent, too_big, out_of_memory, resend_refused, stale, restarted;
  /* set when the transfer could not run at all */
  int setup_failed, forked;
} transfer;

typedef struct multi_ud {
  CURLM *multi; /* NULL after a failed re-creation in a forked child */
  int closed;
  pid_t pid; /* the process that made the multi's connections */
  transfer **slots;
  int nslots, cap;
  int *free_ids, nfree;
  int *finished, nfinished; /* done, not yet handed to a perform's `done` table */
  int in_flight;            /* started, not yet handed out by perform, result or cancel */
  tracked_socket *socks;
  int nsocks, socks_cap;
  char *ca_file, *proxy, *user_agent;
  size_t max_body;
} multi_ud;

/* curl_global_init is not thread-safe and must run once per process, never in luaopen. */
static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;
static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static multi_ud *check_open(lua_State *L) {
  multi_ud *m = (multi_ud *)luaL_checkudata(L, 1, MULTI_MT);
  if (m->closed) luaL_error(L, "pagsmile.issuing: http handle is closed");
  return m;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------------------------------
 * Sockets. libcurl opens and closes every socket through these two callbacks, so m->socks
 * is exactly the set it holds. The close callback's pointer is copied into each connection
 * when it is made, so it is the multi (as long-lived as any connection), not a transfer.
 * Sockets are close-on-exec: a program the process starts does not keep them open.
 */
static curl_socket_t on_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a) {
  multi_ud *m = (multi_ud *)ud;
  curl_socket_t s;
  (void)purpose;
  if (m->nsocks == m->socks_cap) {
    int cap = m->socks_cap ? 2 * m->socks_cap : 16;
    tracked_socket *p = (tracked_socket *)realloc(m->socks, (size_t)cap * sizeof *p);
    if (!p) return CURL_SOCKET_BAD; /* reported as "could not connect" */
    m->socks = p;
    m->socks_cap = cap;
  }
  s = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
  if (s == CURL_SOCKET_BAD) return s;
  memset(&m->socks[m->nsocks], 0, sizeof m->socks[0]);
  m->socks[m->nsocks++].fd = s;
  return s;
}

static int on_close_socket(void *ud, curl_socket_t s) {
  multi_ud *m = (multi_ud *)ud;
  int i;
  for (i = 0; i < m->nsocks; i++) {
    if (m->socks[i].fd == s) {
      m->socks[i] = m->socks[--m->nsocks];
      break;
    }
  }
  return close(s);
}

static int endpoint_of(const struct sockaddr_storage *sa, endpoint *e) {
  if (sa->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    e->port = ntohs(in->sin_port);
    memset(e->addr, 0, sizeof e->addr);
    memcpy(e->addr, &in->sin_addr, 4);
  } else if (sa->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    e->port = ntohs(in6->sin6_port);
    memcpy(e->addr, &in6->sin6_addr, 16);
  } else {
    return 0;
  }
  e->family = sa->ss_family;
  return 1;
}

/* libcurl's words for an end of its connection ("127.0.0.1", 8090) as an endpoint. */
static int endpoint_parse(const char *ip, int port, endpoint *e) {
  memset(e, 0, sizeof *e);
  e->port = (unsigned short)port;
  if (inet_pton(AF_INET, ip, e->addr) == 1) e->family = AF_INET;
  else if (inet_pton(AF_INET6, ip, e->addr) == 1) e->family = AF_INET6;
  return e->family != 0;
}

static int endpoint_eq(const endpoint *a, const endpoint *b) {
  return a->family == b->family && a->port == b->port && memcmp(a->addr, b->addr, 16) == 0;
}

/* Reads a connected socket's two ends (once: they never change). */
static int learn_ends(tracked_socket *t) {
  struct sockaddr_storage sa;
  socklen_t len = sizeof sa;
  if (getsockname(t->fd, (struct sockaddr *)&sa, &len) != 0 || !endpoint_of(&sa, &t->local))
    return 0;
  len = sizeof sa;
  if (getpeername(t->fd, (struct sockaddr *)&sa, &len) != 0 || !endpoint_of(&sa, &t->peer)) {
    t->local.family = 0;
    return 0;
  }
  return 1;
}

/*
 * Whether the connection libcurl is about to write a request on has anything to read
 * (bytes, EOF or an error) before we wrote: then it holds no answer of ours. Its socket is
 * the tracked one whose ends are the ones libcurl names; one that cannot be found counts
 * as stale (a new connection is the safe choice).
 */
static int connection_stale(multi_ud *m, const char *peer_ip, int peer_port,
                            const char *local_ip, int local_port) {
  endpoint local, peer;
  struct pollfd p;
  int i, pass;
  if (!endpoint_parse(local_ip, local_port, &local) || !endpoint_parse(peer_ip, peer_port, &peer))
    return 1;
  /* the sockets whose ends are known first; the others are asked (once each) only then */
  for (pass = 0; pass < 2; pass++) {
    for (i = 0; i < m->nsocks; i++) {
      tracked_socket *t = &m->socks[i];
      if (pass == 0 ? !t->peer.family : (t->peer.family || !learn_ends(t))) continue;
      if (!endpoint_eq(&t->local, &local) || !endpoint_eq(&t->peer, &peer)) continue;
      p.fd = t->fd;
      p.events = POLLIN;
      p.revents = 0;
      return poll(&p, 1, 0) != 0; /* an error counts as readable */
    }
  }
  return 1;
}

/*
 * In a forked child, points every inherited socket at /dev/null: libcurl then closes its
 * copies without a byte (a TLS close_notify, a shutdown) reaching the parent's connections.
 * Returns 0 if /dev/null cannot be opened.
 */
static int detach_inherited(multi_ud *m) {
  struct stat st;
  int i, null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0) return 0;
  for (i = 0; i < m->nsocks; i++) {
    /* only a socket: never clobber a descriptor that is no longer libcurl's */
    if (fstat(m->socks[i].fd, &st) == 0 && S_ISSOCK(st.st_mode)) dup2(null_fd, m->socks[i].fd);
  }
  close(null_fd);
  return 1;
}

/* ---------------------------------------------------------------------------------------
 * The per-transfer callbacks.
 */
static size_t on_write(char *p, size_t size, size_t n, void *ud) {
  transfer *t = (transfer *)ud;
  size_t len = size * n;
  if (len > t->m->max_body - t->answer.len) {
    t->too_big = 1;
    return 0;
  }
  if (!pagsmile_buf_append(&t->answer, p, len)) {
    t->out_of_memory = 1;
    return 0;
  }
  return len;
}

/*
 * Called once the connection is ready (TCP, proxy tunnel and TLS done) and just before the
 * request is written, on new and reused connections alike. From here on the request may
 * have left this machine: "sent" is conservative (a failure before the first byte went out
 * is reported as maybe sent, never the other way). On a reused connection that has
 * something to read, the request is aborted before it is written and restarted on a new
 * connection (see drive()).
 */
static int on_prereq(void *ud, char *peer_ip, char *local_ip, int peer_port, int local_port) {
  transfer *t = (transfer *)ud;
  long connects = 0;
  /* A second pre-request for one transfer is libcurl re-sending it by itself, after a reused
     connection closed unanswered: on a new socket (on_sockopt refuses it) or on another
     kept-alive connection of the multi's cache, where no socket is opened. Refused here. */
  if (t->sent) {
    t->resend_refused = 1;
    return CURL_PREREQFUNC_ABORT;
  }
  if (curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK && connects == 0 &&
      connection_stale(t->m, peer_ip, peer_port, local_ip, local_port)) {
    t->stale = 1;
    return CURL_PREREQFUNC_ABORT;
  }
  t->sent = 1;
  return CURL_PREREQFUNC_OK;
}

/*
 * libcurl silently re-sends a request on a fresh connection when a reused one closes without
 * answering. For a POST that may already have been acted on (and whose request_id must be
 * unique per HTTP request) that is the caller's decision, not libcurl's: once the request
 * may have been written, a new socket is refused and the failure is reported as sent.
 */
static int on_sockopt(void *ud, curl_socket_t fd, curlsocktype purpose) {
  transfer *t = (transfer *)ud;
  (void)fd;
  (void)purpose;
  if (t->sent) {
    t->resend_refused = 1;
    return CURL_SOCKOPT_ERROR;
  }
  return CURL_SOCKOPT_OK;
}

/* ---------------------------------------------------------------------------------------
 * Easy handles and slots.
 */
#define SETOPT(opt, val)                                                                   \
  do {                                                                                     \
    if ((rc = curl_easy_setopt(c, opt, val)) != CURLE_OK) return rc;                        \
  } while (0)

/* The options of every request of this slot: set once, when its easy handle is made. */
static CURLcode easy_setup(multi_ud *m, transfer *t, CURL *c) {
  CURLcode rc;
  SETOPT(CURLOPT_PRIVATE, (void *)t);
  SETOPT(CURLOPT_NOSIGNAL, 1L);
  SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
  SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
  SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
  SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
  /* HTTP/1.1 keeps "sent" accounting and connection reuse simple and predictable */
  SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
  SETOPT(CURLOPT_POST, 1L);
  SETOPT(CURLOPT_WRITEFUNCTION, on_write);
  SETOPT(CURLOPT_WRITEDATA, (void *)t);
  SETOPT(CURLOPT_PREREQFUNCTION, on_prereq);
  SETOPT(CURLOPT_PREREQDATA, (void *)t);
  SETOPT(CURLOPT_SOCKOPTFUNCTION, on_sockopt);
  SETOPT(CURLOPT_SOCKOPTDATA, (void *)t);
  SETOPT(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
  SETOPT(CURLOPT_OPENSOCKETDATA, (void *)m);
  SETOPT(CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
  SETOPT(CURLOPT_CLOSESOCKETDATA, (void *)m);
  if (m->ca_file) SETOPT(CURLOPT_CAINFO, m->ca_file);
  if (m->proxy) SETOPT(CURLOPT_PROXY, m->proxy);
  if (m->user_agent) SETOPT(CURLOPT_USERAGENT, m->user_agent);
  return CURLE_OK;
}

/* Forgets what was set on the slot's easy handle (it is gone, or new). */
static void easy_forget(transfer *t) {
  free(t->url);
  t->url = NULL;
  curl_slist_free_all(t->headers);
  t->headers = NULL;
  t->timeout_ms = t->connect_timeout_ms = t->fresh_connect = -1;
}

/* Wipes the outcome of the slot's last request; a large answer buffer is freed. */
static void slot_clear(transfer *t) {
  pagsmile_buf_clear(&t->answer, KEEP_ANSWER_BYTES);
  t->rc = CURLE_OK;
  t->status = t->connects = 0;
  t->total_us = 0;
  t->sent = t->too_big = t->out_of_memory = t->resend_refused = t->stale = t->restarted = 0;
  t->setup_failed = t->forked = 0;
}

static void unqueue(multi_ud *m, transfer *t) {
  int i;
  if (!t->queued) return;
  for (i = 0; i < m->nfinished; i++) {
    if (m->finished[i] == t->id) {
      memmove(&m->finished[i], &m->finished[i + 1], (size_t)(m->nfinished - i - 1) * sizeof(int));
      m->nfinished--;
      break;
    }
  }
  t->queued = 0;
}

/* Frees a slot for the next start (its easy handle stays). */
static void slot_release(multi_ud *m, transfer *t) {
  if (t->in_multi) curl_multi_remove_handle(m->multi, t->easy);
  t->in_multi = 0;
  if (t->state == SLOT_RUNNING || t->queued) m->in_flight--;
  unqueue(m, t);
  slot_clear(t);
  t->state = SLOT_FREE;
  m->free_ids[m->nfree++] = t->id;
}

/* A free slot (a new one if none is free), or NULL when memory runs out. */
static transfer *slot_acquire(multi_ud *m) {
  transfer *t;
  if (m->nfree == 0) {
    if (m->nslots == m->cap) {
      int cap = m->cap ? 2 * m->cap : 8;
      transfer **slots = (transfer **)realloc(m->slots, (size_t)cap * sizeof *slots);
      int *free_ids, *finished;
      if (!slots) return NULL;
      m->slots = slots;
      free_ids = (int *)realloc(m->free_ids, (size_t)cap * sizeof *free_ids);
      if (!free_ids) return NULL;
      m->free_ids = free_ids;
      finished = (int *)realloc(m->finished, (size_t)cap * sizeof *finished);
      if (!finished) return NULL;
      m->finished = finished;
      m->cap = cap;
    }
    t = (transfer *)calloc(1, sizeof *t);
    if (!t) return NULL;
    t->m = m;
    t->id = m->nslots + 1;
    easy_forget(t);
    m->slots[m->nslots++] = t;
    m->free_ids[m->nfree++] = t->id;
  }
  t = m->slots[m->free_ids[--m->nfree] - 1];
  return t;
}

/* The transfer is over (its outcome stays in the slot until result or cancel). */
static void finish(multi_ud *m, transfer *t, CURLcode rc) {
  t->rc = rc;
  t->state = SLOT_DONE;
  if (t->easy && !t->setup_failed && !t->forked) {
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
    curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &t->connects);
    curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &t->total_us);
  }
  m->finished[m->nfinished++] = t->id;
  t->queued = 1;
}

/* ---------------------------------------------------------------------------------------
 * The multi handle, its life and a forked child's fresh start.
 */
static CURLM *multi_make(void) {
  CURLM *multi = curl_multi_init();
  if (!multi) return NULL;
  if (curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, MAX_CONNECTIONS) != CURLM_OK ||
      curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING) != CURLM_OK) {
    curl_multi_cleanup(multi);
    return NULL;
  }
  return multi;
}

/*
 * Frees the multi handle, every easy handle and the connections. A forked child first
 * detaches the inherited sockets; with no /dev/null it leaves libcurl's state be (a leak)
 * rather than risk writing to the parent's connections.
 */
static void drop_curl(multi_ud *m) {
  int i, ours = m->pid == getpid() || detach_inherited(m);
  for (i = 0; i < m->nslots; i++) {
    transfer *t = m->slots[i];
    if (!t->easy) continue;
    if (ours && t->in_multi) curl_multi_remove_handle(m->multi, t->easy);
    t->in_multi = 0;
    if (ours) curl_easy_cleanup(t->easy);
    t->easy = NULL;
    easy_forget(t);
  }
  if (ours && m->multi) curl_multi_cleanup(m->multi);
  m->multi = NULL;
  m->nsocks = 0;
}

/*
 * In a forked child: a new multi handle, the inherited connections dropped (see the top of
 * this file), and the transfers that were in flight ended as failed (the parent carries on
 * with its own copies of them). Raises if libcurl cannot make a multi handle; a later call
 * tries again.
 */
static void ensure_process(lua_State *L, multi_ud *m) {
  int i;
  if (m->multi && m->pid == getpid()) return;
  if (m->multi) {
    drop_curl(m);
    for (i = 0; i < m->nslots; i++) {
      transfer *t = m->slots[i];
      if (t->state == SLOT_RUNNING) {
        t->forked = 1;
        finish(m, t, CURLE_ABORTED_BY_CALLBACK);
      }
    }
  }
  m->multi = multi_make();
  if (!m->multi) luaL_error(L, "pagsmile.issuing: could not create a libcurl multi handle");
  m->pid = getpid();
}

/* close, __gc and __close: idempotent. */
static int multi_close(lua_State *L) {
  multi_ud *m = (multi_ud *)luaL_checkudata(L, 1, MULTI_MT);
  int i;
  if (m->closed) return 0;
  m->closed = 1;
  drop_curl(m);
  for (i = 0; i < m->nslots; i++) {
    transfer *t = m->slots[i];
    pagsmile_buf_wipe(&t->answer);
    free(t->body);
    free(t);
  }
  free(m->slots);
  free(m->free_ids);
  free(m->finished);
  free(m->socks);
  free(m->ca_file);
  free(m->proxy);
  free(m->user_agent);
  m->slots = NULL;
  m->free_ids = m->finished = NULL;
  m->socks = NULL;
  m->ca_file = m->proxy = m->user_agent = NULL;
  m->nslots = m->cap = m->nfree = m->nfinished = m->in_flight = m->nsocks = m->socks_cap = 0;
  return 0;
}

/* ---------------------------------------------------------------------------------------
 * Options. A bad value is a programming error and raises, before anything is allocated.
 */

/* Integer option in milliseconds (or bytes); fractions round up so 0.4 ms is not "none". */
static long opt_long(lua_State *L, int opts, const char *prefix, const char *name, long def,
                     long min) {
  lua_Number v;
  long r = def;
  if (opts) {
    lua_getfield(L, opts, name);
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "%s.%s must be a number", prefix, name);
      v = lua_tonumber(L, -1);
      if (!(v >= 0 && v <= 2147483647.0)) luaL_error(L, "%s.%s out of range", prefix, name);
      r = (long)v;
      if ((lua_Number)r < v) r++;
    }
    lua_pop(L, 1);
  }
  return r < min ? min : r;
}

/* A string setting, copied (NULL when absent); raises for a wrong type. */
static int opt_string_copy(lua_State *L, int opts, const char *name, char **out) {
  const char *s;
  *out = NULL;
  lua_getfield(L, opts, name);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "settings.%s must be a string", name);
    s = lua_tostring(L, -1);
    *out = (char *)malloc(strlen(s) + 1);
    if (!*out) return 0;
    strcpy(*out, s);
  }
  lua_pop(L, 1);
  return 1;
}

/* Checks opts.headers (raising for a bad entry) and returns how many there are. */
static int headers_count(lua_State *L, int opts) {
  int i, n = 0;
  if (!opts) return 0;
  lua_getfield(L, opts, "headers");
  if (!lua_isnil(L, -1)) {
    luaL_checktype(L, -1, LUA_TTABLE);
    n = (int)lua_rawlen(L, -1);
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "opts.headers[%d] must be a string", i);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return n;
}

/*
 * The slot's header list for opts.headers (n checked entries) and "Expect:" (no
 * "Expect: 100-continue" round trip: the body goes out with the headers). The last list is
 * kept when the lines are the same, which they usually are. Returns 0 on out of memory.
 */
static int set_headers(lua_State *L, transfer *t, int opts, int n) {
  struct curl_slist *l = t->headers, *fresh = NULL;
  int i, same = 1;
  if (n) lua_getfield(L, opts, "headers");
  for (i = 1; i <= n && same; i++, l = l ? l->next : NULL) {
    lua_rawgeti(L, -1, i);
    same = l && strcmp(l->data, lua_tostring(L, -1)) == 0;
    lua_pop(L, 1);
  }
  same = same && l && strcmp(l->data, "Expect:") == 0 && !l->next;
  for (i = 1; i <= n && !same; i++) {
    lua_rawgeti(L, -1, i);
    l = curl_slist_append(fresh, lua_tostring(L, -1));
    lua_pop(L, 1);
    if (!l) break;
    fresh = l;
  }
  if (n) lua_pop(L, 1);
  if (same) return 1;
  l = i > n ? curl_slist_append(fresh, "Expect:") : NULL;
  if (!l || curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, l) != CURLE_OK) {
    curl_slist_free_all(l ? l : fresh);
    curl_slist_free_all(t->headers); /* the easy handle may still point at it: forget both */
    t->headers = NULL;
    curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    return 0;
  }
  curl_slist_free_all(t->headers);
  t->headers = l;
  return 1;
}

static CURLcode set_long(transfer *t, CURLoption opt, long *last, long v) {
  CURLcode rc = CURLE_OK;
  if (*last != v && (rc = curl_easy_setopt(t->easy, opt, v)) == CURLE_OK) *last = v;
  return rc;
}

static CURLcode set_url(transfer *t, const char *url, size_t len) {
  CURLcode rc;
  if (t->url && strcmp(t->url, url) == 0) return CURLE_OK;
  free(t->url);
  t->url = NULL;
  if ((rc = curl_easy_setopt(t->easy, CURLOPT_URL, url)) != CURLE_OK) return rc;
  t->url = (char *)malloc(len + 1); /* without it, the URL is simply set again next time */
  if (t->url) memcpy(t->url, url, len + 1);
  return CURLE_OK;
}

/* Copies the body into the slot (the caller may drop its string) and sets it. */
static CURLcode set_body(transfer *t, const char *body, size_t len) {
  CURLcode rc;
  if (len + 1 > t->body_cap) {
    char *p = (char *)malloc(len + 1);
    if (!p) return CURLE_OUT_OF_MEMORY;
    free(t->body);
    t->body = p;
    t->body_cap = len + 1;
  }
  if (len) memcpy(t->body, body, len);
  if ((rc = curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len)) != CURLE_OK)
    return rc;
  return curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, t->body);
}

/* ---------------------------------------------------------------------------------------
 * Starting and driving transfers.
 */

/* Starts a request on a free slot: its id. Arguments at 2, 3, 4 (url, body, opts). */
static int start(lua_State *L, multi_ud *m) {
  size_t url_len, body_len;
  const char *url = luaL_checklstring(L, 2, &url_len);
  const char *body = luaL_checklstring(L, 3, &body_len);
  int opts = lua_isnoneornil(L, 4) ? 0 : 4, nheaders;
  long timeout_ms, connect_timeout_ms;
  transfer *t;
  CURLcode rc = CURLE_OK;
  CURLMcode mrc;

  if (opts) luaL_checktype(L, 4, LUA_TTABLE);
  timeout_ms = opt_long(L, opts, "opts", "timeout_ms", DEFAULT_TIMEOUT_MS, 1);
  connect_timeout_ms = opt_long(L, opts, "opts", "connect_timeout_ms", DEFAULT_CONNECT_TIMEOUT_MS, 1);
  nheaders = headers_count(L, opts);
  ensure_process(L, m);
  if (!(t = slot_acquire(m))) return luaL_error(L, "pagsmile.issuing: out of memory");

  t->state = SLOT_RUNNING;
  m->in_flight++;
  if (!t->easy) {
    t->easy = curl_easy_init();
    if (!t->easy) rc = CURLE_OUT_OF_MEMORY;
    else if ((rc = easy_setup(m, t, t->easy)) != CURLE_OK) {
      curl_easy_cleanup(t->easy);
      t->easy = NULL;
    }
  }
  if (rc == CURLE_OK && !set_headers(L, t, opts, nheaders)) rc = CURLE_OUT_OF_MEMORY;
  if (rc == CURLE_OK) rc = set_url(t, url, url_len);
  if (rc == CURLE_OK) rc = set_body(t, body, body_len);
  if (rc == CURLE_OK) rc = set_long(t, CURLOPT_TIMEOUT_MS, &t->timeout_ms, timeout_ms);
  if (rc == CURLE_OK)
    rc = set_long(t, CURLOPT_CONNECTTIMEOUT_MS, &t->connect_timeout_ms, connect_timeout_ms);
  if (rc == CURLE_OK) rc = set_long(t, CURLOPT_FRESH_CONNECT, &t->fresh_connect, 0L);
  if (rc == CURLE_OK) {
    if ((mrc = curl_multi_add_handle(m->multi, t->easy)) == CURLM_OK) t->in_multi = 1;
    else rc = mrc == CURLM_OUT_OF_MEMORY ? CURLE_OUT_OF_MEMORY : CURLE_FAILED_INIT;
  }
  if (rc == CURLE_OUT_OF_MEMORY) {
    slot_release(m, t);
    return luaL_error(L, "pagsmile.issuing: out of memory");
  }
  if (rc != CURLE_OK) {
    t->setup_failed = 1;
    finish(m, t, rc);
  }
  return t->id;
}

/* The transfer found its reused connection stale: again, on a new connection. */
static int restart(multi_ud *m, transfer *t) {
  t->stale = t->sent = 0;
  t->restarted = 1;
  if (set_long(t, CURLOPT_FRESH_CONNECT, &t->fresh_connect, 1L) != CURLE_OK) return 0;
  if (curl_multi_add_handle(m->multi, t->easy) != CURLM_OK) return 0;
  t->in_multi = 1;
  return 1;
}

/* Runs libcurl and moves every transfer it finished into the finished queue. */
static void drive(multi_ud *m) {
  int running, left, restarted;
  CURLMsg *msg;
  do {
    restarted = 0;
    curl_multi_perform(m->multi, &running);
    while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
      transfer *t;
      char *priv = NULL;
      CURLcode rc;
      if (msg->msg != CURLMSG_DONE) continue;
      rc = msg->data.result; /* msg is not to be read once its handle is removed */
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
      t = (transfer *)(void *)priv;
      curl_multi_remove_handle(m->multi, t->easy);
      t->in_multi = 0;
      if (t->stale && !t->restarted && rc == CURLE_ABORTED_BY_CALLBACK && restart(m, t)) {
        restarted = 1;
        continue;
      }
      finish(m, t, rc);
    }
  } while (restarted);
}

/* Waits for socket activity or a libcurl timer, at most `seconds`. */
static void wait_for(multi_ud *m, double seconds) {
  double ms = seconds * 1000.0;
  int whole = ms >= 2147483646.0 ? 2147483646 : (int)ms;
  curl_multi_poll(m->multi, NULL, 0, whole + ((double)whole < ms), NULL); /* rounded up */
}

/* ---------------------------------------------------------------------------------------
 * Outcomes.
 */

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
 * Pushes the plain values of a failed transfer and returns their count:
 *   nil, kind, message, curl_code, sent, cause
 * errors.lua makes the error object (and decides retryable) from them.
 */
static int push_failure(lua_State *L, const transfer *t, size_t max_body) {
  failure f = classify(t->rc);
  int sent = t->sent;
  char big[64];
  if (t->setup_failed) {
    f.text = "could not set a libcurl option";
    f.cause = "setup";
  } else if (t->forked) {
    f.text = "the process forked while this request was in flight";
    sent = 1; /* the parent's copy of it goes on */
  } else if (t->too_big) {
    f.kind = "protocol";
    snprintf(big, sizeof big, "answer larger than %lu bytes", (unsigned long)max_body);
    f.text = big;
    f.cause = "too_big";
  } else if (t->resend_refused) {
    f.text = "connection closed without an answer; not resent";
    f.cause = "not_resent";
  } else if (t->rc == CURLE_UNSUPPORTED_PROTOCOL && sent) {
    /* libcurl's word for an answer that is not HTTP (it refuses HTTP/0.9): something
       answered our request with bytes that are no HTTP answer */
    f.kind = "protocol";
    f.text = "invalid HTTP answer: no HTTP status line";
    f.cause = "answer";
  }
  lua_pushnil(L);
  lua_pushstring(L, f.kind);
  lua_pushfstring(L, "%s (curl %d: %s)", f.text, (int)t->rc, curl_easy_strerror(t->rc));
  lua_pushinteger(L, (lua_Integer)t->rc);
  lua_pushboolean(L, sent);
  lua_pushstring(L, f.cause);
  return 6;
}

/* Pushes a finished transfer's outcome and frees its slot (raising only after that). */
static int push_result(lua_State *L, multi_ud *m, transfer *t) {
  int out_of_memory = t->out_of_memory, n = 3;
  if (out_of_memory) {
    slot_release(m, t);
    return luaL_error(L, "pagsmile.issuing: out of memory");
  }
  if (t->rc != CURLE_OK) {
    transfer copy = *t; /* the values outlive the slot; no pointer in it is followed */
    slot_release(m, t);
    return push_failure(L, &copy, m->max_body);
  }
  lua_pushinteger(L, (lua_Integer)t->status);
  lua_pushlstring(L, t->answer.p ? (const char *)t->answer.p : "", t->answer.len);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)t->connects);
  lua_setfield(L, -2, "connects");
  lua_pushnumber(L, (lua_Number)t->total_us / 1000.0);
  lua_setfield(L, -2, "time_ms");
  slot_release(m, t);
  return n;
}

static transfer *slot_of(lua_State *L, multi_ud *m, int arg) {
  lua_Integer id = luaL_checkinteger(L, arg);
  return id >= 1 && id <= m->nslots ? m->slots[id - 1] : NULL;
}

/* ---------------------------------------------------------------------------------------
 * The methods.
 */

/* m:start(url, body, opts) -> id */
static int multi_start(lua_State *L) {
  multi_ud *m = check_open(L);
  lua_pushinteger(L, (lua_Integer)start(L, m));
  return 1;
}

/* m:perform(wait_seconds, done) -> n */
static int multi_perform(lua_State *L) {
  multi_ud *m = check_open(L);
  lua_Number wait = luaL_checknumber(L, 2);
  double deadline;
  int i, n;
  luaL_checktype(L, 3, LUA_TTABLE);
  if (wait != wait) return luaL_argerror(L, 2, "wait_seconds is NaN");
  if (wait < 0) wait = 0;
  if (wait > 1e6) wait = 1e6;
  ensure_process(L, m);
  deadline = now_seconds() + (double)wait;
  if (m->in_flight > m->nfinished) drive(m);
  while (m->nfinished == 0) {
    double left = deadline - now_seconds();
    if (left <= 0) break;
    wait_for(m, left); /* with nothing in flight, this is a plain sleep */
    if (m->in_flight > 0) drive(m);
  }
  /* written first, taken from the queue after: a failed write loses no id */
  n = m->nfinished;
  for (i = 0; i < n; i++) {
    lua_pushinteger(L, (lua_Integer)m->finished[i]);
    lua_rawseti(L, 3, i + 1);
  }
  for (i = 0; i < n; i++) m->slots[m->finished[i] - 1]->queued = 0;
  m->nfinished = 0;
  m->in_flight -= n;
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* m:result(id) -> status, body, info | nil, kind, message, curl_code, sent, cause */
static int multi_result(lua_State *L) {
  multi_ud *m = check_open(L);
  transfer *t = slot_of(L, m, 2);
  if (!t || t->state != SLOT_DONE) return luaL_argerror(L, 2, "not a finished transfer");
  return push_result(L, m, t);
}

/* m:cancel(id): an unfinished transfer is removed, its connection closed if mid-request. */
static int multi_cancel(lua_State *L) {
  multi_ud *m = check_open(L);
  transfer *t = slot_of(L, m, 2);
  if (!t || t->state == SLOT_FREE) return 0;
  ensure_process(L, m);
  slot_release(m, t);
  return 0;
}

/* m:active() -> transfers started and not yet handed out by perform (or taken, or cancelled) */
static int multi_active(lua_State *L) {
  multi_ud *m = check_open(L);
  lua_pushinteger(L, (lua_Integer)m->in_flight);
  return 1;
}

/* m:request(url, body, opts): start, drive until it is done, result. */
static int multi_request(lua_State *L) {
  multi_ud *m = check_open(L);
  int id = start(L, m); /* it may move m->slots */
  transfer *t = m->slots[id - 1];
  if (t->state != SLOT_DONE) drive(m);
  while (t->state != SLOT_DONE) {
    wait_for(m, 1.0); /* libcurl's own timeouts end it */
    drive(m);
  }
  return push_result(L, m, t);
}

/* core.multi{ ca_file=, proxy=, user_agent=, max_body= } -> m | nil, message */
static int multi_new(lua_State *L) {
  multi_ud *m;
  int settings = lua_isnoneornil(L, 1) ? 0 : 1;
  if (settings) luaL_checktype(L, 1, LUA_TTABLE);
  m = (multi_ud *)lua_newuserdata(L, sizeof *m);
  memset(m, 0, sizeof *m);
  m->pid = getpid();
  luaL_setmetatable(L, MULTI_MT);
  m->max_body = (size_t)opt_long(L, settings, "settings", "max_body", DEFAULT_MAX_BODY, 0);
  if (settings && !(opt_string_copy(L, 1, "ca_file", &m->ca_file) &&
                    opt_string_copy(L, 1, "proxy", &m->proxy) &&
                    opt_string_copy(L, 1, "user_agent", &m->user_agent)))
    return luaL_error(L, "pagsmile.issuing: out of memory");
  pthread_once(&global_once, global_init);
  if (global_rc != CURLE_OK) {
    lua_pushnil(L);
    lua_pushfstring(L, "libcurl initialisation failed (curl %d: %s)", (int)global_rc,
                    curl_easy_strerror(global_rc));
    return 2;
  }
  m->multi = multi_make();
  if (!m->multi) {
    lua_pushnil(L);
    lua_pushliteral(L, "could not create a libcurl multi handle");
    return 2;
  }
  return 1;
}

static int curl_version_string(lua_State *L) {
  lua_pushstring(L, curl_version_info(CURLVERSION_NOW)->version);
  return 1;
}

static const luaL_Reg multi_methods[] = {
  { "start", multi_start },
  { "perform", multi_perform },
  { "result", multi_result },
  { "cancel", multi_cancel },
  { "active", multi_active },
  { "request", multi_request },
  { "close", multi_close },
  { NULL, NULL },
};

void pagsmile_http_register(lua_State *L) {
  pagsmile_handle_metatable(L, MULTI_MT, multi_methods, multi_close);
  lua_pop(L, 1);
  lua_pushcfunction(L, multi_new);
  lua_setfield(L, -2, "multi");
  lua_pushcfunction(L, curl_version_string);
  lua_setfield(L, -2, "curl_version");
}
