-- The transport for plain Lua: one libcurl multi handle (core.multi) per transport, whose
-- kept-alive connections serve every request. Same interface as transport/ngx.lua:
--   t:request{ url, body, headers = { [name] = value }, timeout, connect_timeout }  (seconds)
--     -> { status, body, connects, time }
--        | nil, err (errors.lua: kind, message, curl_code, sent, retryable, setting)
-- and, for a scheduler running many requests at once on the same connections:
--   t:start(req) -> id;  t.multi:perform(wait_seconds, done) -> n;  t:result(id) -> as request
--   (t.multi: core.multi's start/perform/result/cancel/active, in src/http.c)
local core = require "pagsmile.issuing.core"
local errors = require "pagsmile.issuing.errors"
local http = require "pagsmile.issuing.http"

local M = { name = "curl" }

M.DEFAULT_USER_AGENT = http.USER_AGENT .. "/" .. tostring(core._VERSION) .. " libcurl/" .. core.curl_version()

local Transport = {}
Transport.__index = Transport

local type, pairs, tostring, setmetatable = type, pairs, tostring, setmetatable
local sort, ceil, find = table.sort, math.ceil, string.find

-- opts: ca_file, proxy ("" = none, nil = libcurl's environment), user_agent, max_body (bytes)
function M.new(opts)
  opts = opts or {}
  local settings = {
    ca_file = opts.ca_file,
    proxy = opts.proxy,
    user_agent = opts.user_agent or M.DEFAULT_USER_AGENT,
    max_body = opts.max_body or http.MAX_BODY,
  }
  local multi, err = core.multi(settings)
  if not multi then
    return nil, errors.transport("transport", err, false, "setup")
  end
  return setmetatable({
    multi = multi,
    settings = settings,
    -- one options table, reused by every request: only its fields change
    opts = { headers = false, timeout_ms = 0, connect_timeout_ms = 0 },
    urls = {}, -- [id] = the URL of a started request, for its error message
  }, Transport)
end

-- Sorted "Name: value" lines; a header http.header_ok refuses is a programming error.
local function header_lines(map)
  local names, n = {}, 0
  for name in pairs(map) do
    if type(name) ~= "string" or not find(name, http.TOKEN) then
      error("pagsmile.issuing: bad header name", 4)
    end
    n = n + 1
    names[n] = name
  end
  sort(names)
  local lines = {}
  for i = 1, n do
    local name = names[i]
    local value = tostring(map[name])
    if not http.header_ok(name, value) then
      error("pagsmile.issuing: bad value for header " .. name, 4)
    end
    lines[i] = name .. ": " .. value
  end
  return lines
end

-- libcurl codes that point at a setting (issue 10 item 7): the setting, and a hint that does
-- not echo its value. 60: certificate not trusted (or not for this host); 83: issuer check;
-- 77: the CA file cannot be loaded; 5 and 97: the proxy.
local CA_HINTS = {
  set = "check ca_file: the server's certificate does not chain to it (or does not name "
    .. "base_url's host)",
  unset = "the system's CA store does not trust the server's certificate: set ca_file to the "
    .. "CA that does (or check base_url's host)",
}
local function hint(code, opts)
  if code == 60 or code == 83 then return "ca_file", CA_HINTS[opts.ca_file and "set" or "unset"] end
  if code == 77 then return "ca_file", "check ca_file: it cannot be read as PEM certificates" end
  if code == 5 or code == 97 then return "proxy", "check proxy" end
end

-- Says where the request went and, when the failure points at a setting, which one.
local function failure(url, opts, kind, message, curl_code, sent, cause)
  local where = http.target(url)
  if where then
    message = message .. ", talking to " .. where
      .. (opts.proxy and opts.proxy ~= "" and " through the proxy" or "")
  end
  local setting, text = hint(curl_code, opts)
  if setting then message = message .. "; " .. text end
  return nil, errors.transport(kind, message, sent, cause, { curl_code = curl_code, setting = setting })
end

-- The core's options for req (the one table, refilled).
local function options(self, req)
  local opts = self.opts
  opts.headers = req.headers and header_lines(req.headers) or nil
  opts.timeout_ms = ceil((req.timeout or http.TIMEOUT) * 1000)
  opts.connect_timeout_ms = ceil((req.connect_timeout or http.CONNECT_TIMEOUT) * 1000)
  return opts
end

-- The core's values (status, body, info | nil, kind, message, curl_code, sent, cause) as
-- the transport's answer.
local function answer(self, url, status, body, info, curl_code, sent, cause)
  if not status then return failure(url, self.settings, body, info, curl_code, sent, cause) end
  return { status = status, body = body, connects = info.connects, time = info.time_ms / 1000 }
end

function Transport:request(req)
  return answer(self, req.url, self.multi:request(req.url, req.body or "", options(self, req)))
end

--- Starts req without waiting: its id, for t.multi:perform and t:result.
function Transport:start(req)
  local id = self.multi:start(req.url, req.body or "", options(self, req))
  self.urls[id] = req.url
  return id
end

--- The answer of a started request that perform reported done (as request's).
function Transport:result(id)
  local url = self.urls[id]
  self.urls[id] = nil
  return answer(self, url, self.multi:result(id))
end

--- Drops a started request (its connection closed if it is mid-request).
function Transport:cancel(id)
  self.urls[id] = nil
  self.multi:cancel(id)
end

function Transport:close()
  self.multi:close()
end

return M
