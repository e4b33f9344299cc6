-- luacheck: globals ngx
-- The non-blocking transport for code running in OpenResty: HTTP/1.1 over ngx.socket.tcp
-- with the worker's connection pool. Same interface as transport/curl.lua:
--   t:request{ url, body, headers, timeout, connect_timeout, method }
--     -> { status, body, headers, connects, time }
--        | nil, err (errors.lua: kind, message, sent, retryable, setting)
local errors = require "pagsmile.issuing.errors"
local http = require "pagsmile.issuing.http"

local M = { name = "ngx" }

local MAX_BODY = http.MAX_BODY
local MAX_HEADERS = 100
local DEFAULT_UA = http.USER_AGENT .. " (ngx)"

local Transport = {}
Transport.__index = Transport

local lower, find, match, concat = string.lower, string.find, string.match, table.concat

-- Parsed URLs, shared by every transport of the worker; bounded so odd callers cannot grow it.
local url_cache, url_cache_n = {}, 0

local function parse_url(url)
  local hit = url_cache[url]
  if hit then return hit end
  local scheme, bracketed, port_text, path = http.split_url(url)
  if not scheme then return nil, "bad url" end
  scheme = lower(scheme)
  if scheme ~= "http" and scheme ~= "https" then return nil, "unsupported url scheme" end
  local host = match(bracketed, "^%[(.+)%]$") or bracketed
  local port = match(port_text, "^:?(%d*)$")
  if host == "" or not port or (host == bracketed and find(host, "[%[%]]")) then
    return nil, "bad url host"
  end
  local tls = scheme == "https"
  local default_port = tls and 443 or 80
  port = tonumber(port) or default_port
  if port < 1 or port > 65535 then return nil, "bad url port" end
  if path == "" then path = "/" end
  local host_header = port == default_port and bracketed or (bracketed .. ":" .. port)
  -- nginx resolves names only through a `resolver`; "localhost" needs none. An IPv6
  -- literal keeps its brackets for connect.
  local addr = lower(host) == "localhost" and "127.0.0.1" or host
  -- An address literal needs no lookup, and its certificate is matched by IP SAN.
  local ip = find(host, ":", 1, true) ~= nil or match(host, "^%d+%.%d+%.%d+%.%d+$") ~= nil
  if find(addr, ":", 1, true) then addr = "[" .. addr .. "]" end
  local u = { host = host, addr = addr, ip = ip, named = not ip and addr == host, port = port,
              tls = tls, path = path, host_header = host_header }
  if url_cache_n >= 256 then url_cache, url_cache_n = {}, 0 end
  url_cache[url], url_cache_n = u, url_cache_n + 1
  return u
end

-- Each transport keeps its own pool: nginx verifies a connection once, against the trust
-- store of the location that opened it, so two clients never share a verified connection.
local instances = 0

function M.new(opts)
  opts = opts or {}
  instances = instances + 1
  local self = setmetatable({
    pool_tag = "pagsmile#" .. instances,
    ssl_verify = opts.ssl_verify ~= false,
    pool_size = opts.pool_size or 32,
    keepalive_ms = math.floor((opts.keepalive_timeout or 60) * 1000),
    user_agent = opts.user_agent or DEFAULT_UA,
    closed = false,
  }, Transport)
  return self
end

-- A failure as plain values: nil, kind, message, sent, cause (errors.RETRYABLE_CASES);
-- Transport:request makes the error object.
local function fail(kind, message, sent, sock, cause)
  if sock then sock:close() end
  return nil, kind, message, sent, cause
end

-- nginx resolves a name on its own `resolver_timeout` (30 s by default), deaf to the socket's
-- timeouts. So a connect that needs a lookup runs on a light thread, killed (which cancels
-- the lookup) when `seconds` pass. Returns ok, err like sock:connect.
local TIMED_OUT = {}
local function connect_within(sock, u, opts, seconds)
  local threads = ngx.thread
  local spawned, worker = pcall(threads.spawn, function() return sock:connect(u.addr, u.port, opts) end)
  -- no light threads here (a user coroutine of an odd phase): connect as nginx will
  if not spawned then return sock:connect(u.addr, u.port, opts) end
  local ok, res, err
  if coroutine.status(worker) == "dead" then -- a pooled connection, taken at once
    ok, res, err = threads.wait(worker)
  else
    local timer = threads.spawn(function() ngx.sleep(seconds) return TIMED_OUT end)
    ok, res, err = threads.wait(worker, timer)
    threads.kill(timer)
    threads.kill(worker)
  end
  if not ok then return nil, "connect failed: " .. tostring(res) end
  if res == TIMED_OUT then return nil, "timed out looking up the host or connecting" end
  return res, err
end

-- ngx_lua reports a certificate that fails verification as "<X509 code>: <reason>" or
-- "certificate host mismatch"; request() and certificate_has_ip add their own "certificate
-- ..." reasons. Anything else is the handshake itself failing. (resty.core can put a stale
-- code before its own "handshake failed", hence the first test.)
local HANDSHAKE_ERRORS = { ["handshake failed"] = true, timeout = true, closed = true }
local function certificate_failure(serr)
  local code, reason = match(serr, "^(%d+): (.*)$")
  if HANDSHAKE_ERRORS[reason or serr] then return false end
  return code ~= nil or find(serr, "certificate", 1, true) ~= nil
end

-- Does the peer certificate of a verified TLS connection name this IP address? Checked
-- through OpenSSL: nginx's own check (X509_check_host) knows DNS names only. Returns true,
-- or nil and why not.
local ffi_ssl
local function certificate_has_ip(sock, ip)
  if ffi_ssl == nil then
    ffi_ssl = false
    local ok, ffi = pcall(require, "ffi")
    if ok then
      -- tolerated: another module may have declared these already
      pcall(ffi.cdef, "void *SSL_SESSION_get0_peer(void *s);"
                      .. "int X509_check_ip_asc(void *x, const char *ipasc, unsigned int flags);")
      local found = pcall(function() return ffi.C.SSL_SESSION_get0_peer, ffi.C.X509_check_ip_asc end)
      if found then ffi_ssl = ffi end
    end
  end
  local cannot = "cannot check the certificate against the address"
  if not ffi_ssl then return nil, cannot .. " (no OpenSSL through FFI)" end
  -- On a connection already set up, sslhandshake only hands out its SSL_SESSION.
  local sess = sock:sslhandshake(nil, nil, false)
  if type(sess) ~= "cdata" or sess == nil then return nil, cannot end
  local cert = ffi_ssl.C.SSL_SESSION_get0_peer(sess)
  if cert ~= nil and ffi_ssl.C.X509_check_ip_asc(cert, ip, 0) == 1 then return true end
  return nil, "certificate does not match the address"
end

-- A receive error after the request went out: the server may have acted on it.
local function read_fail(err, what, sock)
  if err == "timeout" then
    return fail("timeout", "timed out reading the " .. what, true, sock, "timeout")
  end
  local why = tostring(err):gsub("^connection ", "")
  return fail("transport", "connection " .. why .. " while reading the " .. what, true, sock, "reset")
end

-- The answer is read through a small buffer over receiveany. A socket timeout restarts
-- whenever bytes arrive, so `receive(n)` or `receive("*l")` would let a server that drips
-- a byte at a time outlive any deadline; here every socket read waits at most for what is
-- left of the request's own deadline.
local MAX_LINE = 8192
local Reader = {}
Reader.__index = Reader

local function new_reader(sock, deadline)
  return setmetatable({ sock = sock, deadline = deadline, buf = "", pos = 1 }, Reader)
end

-- One socket read, waiting at most for what is left of the deadline.
function Reader:receive()
  ngx.update_time()
  local left = self.deadline - ngx.now()
  if left <= 0 then return nil, "timeout" end
  self.sock:settimeout(math.max(1, math.floor(left * 1000)))
  return self.sock:receiveany(65536)
end

-- Appends one read to the buffer (for lines, which are short).
function Reader:fill()
  local data, err = self:receive()
  if not data then return nil, err end
  if self.pos > 1 then self.buf, self.pos = self.buf:sub(self.pos), 1 end
  self.buf = self.buf .. data
  return true
end

-- The unread part of the buffer, which is left empty.
function Reader:take()
  local s = self.buf:sub(self.pos)
  self.buf, self.pos = "", 1
  return s
end

-- One line without its CRLF (or LF).
function Reader:line()
  while true do
    local nl = find(self.buf, "\n", self.pos, true)
    if nl then
      local line = self.buf:sub(self.pos, nl - 1)
      self.pos = nl + 1
      if line:byte(-1) == 13 then line = line:sub(1, -2) end
      return line
    end
    if #self.buf - self.pos + 1 > MAX_LINE then return nil, "protocol", "header line too long" end
    local ok, err = self:fill()
    if not ok then return nil, err end
  end
end

-- Exactly n bytes. Reads are gathered and joined once, so a body that arrives in many small
-- pieces costs linear time.
function Reader:bytes(n)
  local have = #self.buf - self.pos + 1
  if have < n then
    local parts = { self:take() }
    while have < n do
      local data, err = self:receive()
      if not data then return nil, err end
      parts[#parts + 1] = data
      have = have + #data
    end
    self.buf = concat(parts)
  end
  local data = self.buf:sub(self.pos, self.pos + n - 1)
  self.pos = self.pos + n
  return data
end

-- Everything up to the server's close.
function Reader:rest()
  local parts = { self:take() }
  local total = #parts[1]
  while true do
    if total > MAX_BODY then return nil, "protocol", "response body larger than 1 MiB" end
    local data, err = self:receive()
    if not data then
      if err == "closed" then return concat(parts) end
      return nil, err
    end
    parts[#parts + 1] = data
    total = total + #data
  end
end

-- Bytes read past the answer: a server that sends more than it announced.
function Reader:leftover()
  return #self.buf >= self.pos
end

-- A header (or trailer) line: a token name, a colon, the value. Obsolete line folding,
-- space before the colon and stray control characters are refused (RFC 9112 §5).
local function header_line(h)
  local name, value = match(h, "^([%w!#$%%&'*+.^_`|~-]+):[ \t]*(.-)[ \t]*$") -- http.TOKEN
  if not name or find(value, "[%z\1-\8\10-\31\127]") then return nil end
  return lower(name), value
end

-- Trailers after the last chunk, up to the empty line; checked, then dropped.
local function read_trailers(r)
  for _ = 1, MAX_HEADERS do
    local t, err, msg = r:line()
    if not t then return nil, err, msg end
    if t == "" then return true end
    if not header_line(t) then return nil, "protocol", "bad trailer line" end
  end
  return nil, "protocol", "too many trailer lines"
end

local function read_chunked(r)
  local parts, total = {}, 0
  while true do
    local line, err, msg = r:line()
    if not line then return nil, err, msg end
    -- chunk-size [ chunk-ext ]: hex digits, then nothing or ";extension"
    local hex, ext = match(line, "^(%x+)[ \t]*(.*)$")
    if not hex or (ext ~= "" and ext:byte(1) ~= 59) or #hex > 15 then
      return nil, "protocol", "bad chunk size line"
    end
    local size = tonumber(hex, 16)
    if size == 0 then
      local ok, terr, tmsg = read_trailers(r)
      if not ok then return nil, terr, tmsg end
      return concat(parts)
    end
    total = total + size
    if total > MAX_BODY then return nil, "protocol", "response body larger than 1 MiB" end
    local data, derr = r:bytes(size)
    if not data then return nil, derr end
    parts[#parts + 1] = data
    local crlf, cerr, cmsg = r:line()
    if not crlf then return nil, cerr, cmsg end
    if crlf ~= "" then return nil, "protocol", "bad chunk terminator" end
  end
end

-- Status line and header block; interim 1xx answers are skipped.
local function read_head(r)
  while true do
    local line, err, msg = r:line()
    if not line then
      -- Bytes, then the close, and never a line: something answered, but not in HTTP (as
      -- libcurl says too). A close with nothing at all stays a transport error.
      if err == "closed" and #r.buf >= r.pos then
        return nil, "protocol", "invalid HTTP answer: no HTTP status line"
      end
      return nil, err, msg
    end
    local version, status, reason = match(line, "^HTTP/(1%.[01]) ([1-5]%d%d)(.*)$")
    if not version or (reason ~= "" and not find(reason, "^[ \t]")) then
      return nil, "protocol", "bad status line"
    end
    status = tonumber(status)
    if status == 101 then return nil, "protocol", "unexpected 101 Switching Protocols" end
    local headers, n = {}, 0
    while true do
      local h, herr, hmsg = r:line()
      if not h then return nil, herr, hmsg end
      if h == "" then break end
      n = n + 1
      if n > MAX_HEADERS then return nil, "protocol", "too many header lines" end
      local name, value = header_line(h)
      if not name then return nil, "protocol", "bad header line" end
      local prev = headers[name]
      headers[name] = prev and (prev .. ", " .. value) or value
    end
    if status >= 200 then return version, status, headers end
  end
end

local SKIP = { host = true, ["content-length"] = true, connection = true,
               ["user-agent"] = true, ["transfer-encoding"] = true }

local function request(self, req)
  if self.closed then return fail("transport", "transport is closed", false, nil, "closed") end
  ngx.update_time()
  local started = ngx.now()
  local u, uerr = parse_url(req.url)
  if not u then return fail("transport", uerr, false, nil, "url") end
  local timeout = req.timeout or http.TIMEOUT
  local connect_timeout = math.min(req.connect_timeout or timeout, timeout)
  local body = req.body or ""
  local verify = u.tls and self.ssl_verify or false

  local sock = ngx.socket.tcp()
  local ms = math.max(1, math.floor(connect_timeout * 1000))
  local rest = math.max(1, math.floor(timeout * 1000))
  sock:settimeouts(ms, rest, rest)
  local pool = self.pool_tag .. ":" .. u.host .. ":" .. u.port .. ":"
               .. (u.tls and "tls" or "plain") .. ":" .. (verify and "verify" or "noverify")
  local opts = { pool = pool, pool_size = self.pool_size }
  local ok, err
  if u.named then
    ok, err = connect_within(sock, u, opts, connect_timeout)
  else
    ok, err = sock:connect(u.addr, u.port, opts)
  end
  if not ok then
    if err == "timeout" or find(tostring(err), "timed out", 1, true) then
      return fail("timeout", "timed out connecting: " .. tostring(err), false, sock, "timeout")
    end
    return fail("transport", "could not connect: " .. tostring(err), false, sock, "connect")
  end
  local reused = sock:getreusedtimes() or 0
  if u.tls and reused == 0 then
    -- ngx_lua times the handshake with the connect timeout: give it what connecting left.
    ngx.update_time()
    local left = math.min(connect_timeout, timeout) - (ngx.now() - started)
    if left <= 0 then return fail("timeout", "timed out connecting", false, sock, "timeout") end
    sock:settimeouts(math.max(1, math.floor(left * 1000)), rest, rest)
    -- An address goes out without SNI (RFC 6066 forbids it) and is matched by IP SAN below.
    local sess, serr = sock:sslhandshake(false, not u.ip and u.host or nil, verify)
    -- ngx_lua 0.10.23 reports success for a handshake that failed verification when it
    -- completed within the call; the socket is closed by then, which getreusedtimes reveals.
    if sess and not sock:getreusedtimes() then sess, serr = nil, "certificate verify failed" end
    if sess and verify and u.ip then
      local match_ip, why = certificate_has_ip(sock, u.host)
      if not match_ip then sess, serr = nil, why end
    end
    if not sess then
      if serr == "timeout" then return fail("timeout", "timed out in the TLS handshake", false, sock, "timeout") end
      -- as curl: a certificate that fails is a misconfiguration, and retrying cannot help
      return fail("transport", "TLS handshake failed: " .. tostring(serr), false, sock,
                  certificate_failure(tostring(serr)) and "certificate" or "handshake")
    end
  end

  ngx.update_time()
  local remaining = timeout - (ngx.now() - started)
  if remaining <= 0 then return fail("timeout", "deadline reached before sending", false, sock, "timeout") end
  rest = math.max(1, math.floor(remaining * 1000))
  sock:settimeouts(ms, rest, rest)

  local lines = {
    (req.method or "POST"), " ", u.path, " HTTP/1.1\r\n",
    "Host: ", u.host_header, "\r\n",
    "User-Agent: ", self.user_agent, "\r\n",
    "Connection: keep-alive\r\n",
    "Content-Length: ", tostring(#body), "\r\n",
  }
  for name, value in pairs(req.headers or {}) do
    if not SKIP[lower(name)] then
      if not http.header_ok(name, value) then
        return fail("transport", "bad request header", false, sock, "header")
      end
      local n = #lines
      lines[n + 1], lines[n + 2], lines[n + 3], lines[n + 4] = name, ": ", tostring(value), "\r\n"
    end
  end
  lines[#lines + 1] = "\r\n"
  lines[#lines + 1] = body
  local sent_ok, serr = sock:send(lines)
  if not sent_ok then
    if serr == "timeout" then return fail("timeout", "timed out sending the request", true, sock, "timeout") end
    return fail("transport", "connection " .. tostring(serr) .. " while sending", true, sock, "reset")
  end

  local r = new_reader(sock, started + timeout)
  local version, status, headers = read_head(r)
  if not version then
    if status == "protocol" then return fail("protocol", headers, true, sock, "answer") end
    return read_fail(status, "response head", sock)
  end

  local conn = lower(headers["connection"] or "")
  local keep = not find(conn, "close", 1, true) and (version ~= "1.0" or find(conn, "keep-alive", 1, true))
  local res_body, berr, bmsg
  local te = headers["transfer-encoding"]
  local clen = headers["content-length"]
  if status == 204 or status == 304 or (req.method or "POST") == "HEAD" then
    res_body = ""
  elseif te then
    -- No Accept-Encoding is sent, so "chunked" is the only coding a server may use.
    if lower(te) ~= "chunked" then
      return fail("protocol", "unsupported transfer-encoding", true, sock, "answer")
    end
    -- Both framings at once is how request smuggling starts: read by chunks, then close.
    if clen then keep = false end
    res_body, berr, bmsg = read_chunked(r)
  elseif clen then
    local n = tonumber(match(clen, "^%s*(%d+)%s*$"))
    if not n then return fail("protocol", "bad content-length", true, sock, "answer") end
    if n > MAX_BODY then return fail("protocol", "response body larger than 1 MiB", true, sock, "too_big") end
    if n == 0 then res_body = "" else res_body, berr = r:bytes(n) end
  else
    keep = false
    res_body, berr, bmsg = r:rest()
  end
  if not res_body then
    if berr == "protocol" then return fail("protocol", bmsg, true, sock, "answer") end
    return read_fail(berr, "response body", sock)
  end

  if keep and not r:leftover() then
    local kok = sock:setkeepalive(self.keepalive_ms, self.pool_size)
    if not kok then sock:close() end
  else
    sock:close()
  end
  ngx.update_time()
  return {
    status = status,
    body = res_body,
    headers = headers,
    connects = reused == 0 and 1 or 0,
    time = ngx.now() - started,
  }
end

-- Every failure says where the request went, and a certificate failure where nginx's trust
-- comes from (issue 10 item 7).
function Transport:request(req)
  local res, kind, message, sent, cause = request(self, req)
  if res then return res end
  local where = parse_url(req.url) and http.target(req.url)
  if where then message = message .. ", talking to " .. where end
  local setting
  if cause == "certificate" then
    setting = "lua_ssl_trusted_certificate"
    message = message .. "; nginx checks certificates against lua_ssl_trusted_certificate"
      .. " (the ca_file setting is libcurl's only)"
  end
  return nil, errors.transport(kind, message, sent, cause, { setting = setting })
end

-- Pooled connections belong to the worker, not to this object: nothing to release but a flag.
function Transport:close()
  self.closed = true
  return true
end

return M
