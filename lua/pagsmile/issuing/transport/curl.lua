-- The blocking transport for plain Lua: one libcurl easy handle (core.http) per transport,
-- reused between requests so the connection stays alive. Same interface as transport/ngx.lua:
--   t:request{ url, body, headers = { [name] = value }, timeout, connect_timeout }  (seconds)
--     -> { status, body, connects, time } | nil, { kind, message, curl_code, sent, retryable }
local core = require "pagsmile.issuing.core"

local M = { name = "curl" }

M.DEFAULT_USER_AGENT = "pagsmile-issuing/" .. tostring(core._VERSION) .. " libcurl/" .. core.curl_version()

local DEFAULT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT = 30, 5

local Transport = {}
Transport.__index = Transport

local error_mt = { __tostring = function(e) return e.kind .. ": " .. e.message end }

local type, pairs, tostring, setmetatable = type, pairs, tostring, setmetatable
local sort, ceil, find = table.sort, math.ceil, string.find

-- opts: ca_file, proxy ("" = none, nil = libcurl's environment), user_agent, max_body (bytes)
function M.new(opts)
  opts = opts or {}
  local handle, err = core.http()
  if not handle then
    return nil, setmetatable({ kind = "transport", message = err, sent = false, retryable = false },
                             error_mt)
  end
  return setmetatable({
    handle = handle,
    -- one options table, reused by every request: only the per-request fields change
    opts = {
      ca_file = opts.ca_file,
      proxy = opts.proxy,
      user_agent = opts.user_agent or M.DEFAULT_USER_AGENT,
      max_body = opts.max_body,
      headers = false,
      timeout_ms = 0,
      connect_timeout_ms = 0,
    },
  }, Transport)
end

-- Sorted "Name: value" lines; CR, LF or NUL in a header would let it smuggle other headers.
local function header_lines(map)
  local names, n = {}, 0
  for name in pairs(map) do
    if type(name) ~= "string" or not find(name, "^[%w!#$%%&'*+.^_`|~-]+$") then
      error("pagsmile.issuing: bad header name", 3)
    end
    n = n + 1
    names[n] = name
  end
  sort(names)
  local lines = {}
  for i = 1, n do
    local name = names[i]
    local value = tostring(map[name])
    if find(value, "[%z\r\n]") then
      error("pagsmile.issuing: bad value for header " .. name, 3)
    end
    lines[i] = name .. ": " .. value
  end
  return lines
end

function Transport:request(req)
  local opts = self.opts
  opts.headers = req.headers and header_lines(req.headers) or nil
  opts.timeout_ms = ceil((req.timeout or DEFAULT_TIMEOUT) * 1000)
  opts.connect_timeout_ms = ceil((req.connect_timeout or DEFAULT_CONNECT_TIMEOUT) * 1000)
  local status, body, info = self.handle:request(req.url, req.body or "", opts)
  if not status then return nil, setmetatable(body, error_mt) end
  return { status = status, body = body, connects = info.connects, time = info.time_ms / 1000 }
end

function Transport:close()
  self.handle:close()
end

return M
