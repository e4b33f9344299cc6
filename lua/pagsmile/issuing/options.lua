-- The client's settings (DESIGN.md "Public API"): checked once, when the client is made.
-- Every problem is a `config` error naming the setting.
local core = require "pagsmile.issuing.core"
local api = require "pagsmile.issuing.api"
local errors = require "pagsmile.issuing.errors"

local options = {}

local DEFAULTS = {
  base_url = api.SANDBOX_URL,
  timeout = 30,
  connect_timeout = 5,
  max_retries = 2,
  utc_offset = api.DEFAULT_UTC_OFFSET,
  version = api.DEFAULT_VERSION,
}

local KNOWN = {
  app_id = true, partner_id = true, sub_partner_id = true,
  platform_public_key = true, merchant_private_key = true,
  base_url = true, timeout = true, connect_timeout = true, max_retries = true,
  utc_offset = true, version = true, transport = true,
  ca_file = true, proxy = true, user_agent = true, log = true,
}

local MAX_TIMEOUT = 600
local MAX_RETRIES = 10

local function nonempty_string(v)
  return type(v) == "string" and v:find("%S") ~= nil
end

local function is_loopback(host)
  return host == "localhost" or host == "[::1]" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

-- base_url: https, or plain http only towards this machine (the local sandbox).
local function check_base_url(url)
  if type(url) ~= "string" then return nil, "must be a string URL" end
  if url:find("[%c%s]") then return nil, "must not contain spaces or control characters" end
  url = url:gsub("/+$", "")
  local scheme, host = url:match("^(%a+)://(%[?[%w%.%-:]+%]?)")
  if not scheme then return nil, "must look like https://host[:port]" end
  host = host:gsub(":%d+$", "")
  if scheme == "https" then return url end
  if scheme == "http" and is_loopback(host) then return url end
  return nil, "must use https (plain http is allowed only for 127.0.0.1/localhost)"
end

-- "+08:00" → seconds east of UTC.
local function parse_offset(s)
  if type(s) ~= "string" then return nil end
  local sign, hh, mm = s:match("^([+-])(%d%d):(%d%d)$")
  if not sign then return nil end
  hh, mm = tonumber(hh), tonumber(mm)
  if hh > 14 or mm > 59 then return nil end
  local secs = hh * 3600 + mm * 60
  return sign == "-" and -secs or secs
end

local function check_seconds(v, name, limit)
  if type(v) ~= "number" or v ~= v or v <= 0 or v > limit then
    return errors.config(name, "must be a number of seconds above 0 and at most " .. limit)
  end
end

-- Returns the normalised settings with parsed keys, or nil and a config error.
function options.check(opts)
  if type(opts) ~= "table" then
    return nil, errors.config("options", "issuing.new expects a table of settings")
  end
  for k in pairs(opts) do
    if not KNOWN[k] then
      return nil, errors.config(tostring(k), "is not a setting of issuing.new")
    end
  end
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end

  for _, name in ipairs { "app_id", "partner_id" } do
    if not nonempty_string(o[name]) then
      return nil, errors.config(name, "is required (a non-empty string from the dashboard)")
    end
  end
  if o.sub_partner_id ~= nil and type(o.sub_partner_id) ~= "string" then
    return nil, errors.config("sub_partner_id", "must be a string or nil")
  end

  local msg
  if not nonempty_string(o.platform_public_key) then
    return nil, errors.config("platform_public_key",
      "is required (the platform's RSA public key, PEM or Base64, from the dashboard)")
  end
  o.platform_key, msg = core.public_key(o.platform_public_key)
  if not o.platform_key then return nil, errors.config("platform_public_key", msg) end
  if not nonempty_string(o.merchant_private_key) then
    return nil, errors.config("merchant_private_key",
      "is required (your RSA private key; issuing.keygen() makes a pair)")
  end
  o.merchant_key, msg = core.private_key(o.merchant_private_key)
  if not o.merchant_key then return nil, errors.config("merchant_private_key", msg) end
  -- The PEM text is not kept: the parsed keys are all the client needs.
  o.platform_public_key, o.merchant_private_key = nil, nil

  o.base_url, msg = check_base_url(o.base_url)
  if not o.base_url then return nil, errors.config("base_url", msg) end

  local e = check_seconds(o.timeout, "timeout", MAX_TIMEOUT)
         or check_seconds(o.connect_timeout, "connect_timeout", MAX_TIMEOUT)
  if e then return nil, e end
  if o.connect_timeout > o.timeout then
    return nil, errors.config("connect_timeout", "must not exceed timeout")
  end
  local r = o.max_retries
  if type(r) ~= "number" or r ~= math.floor(r) or r < 0 or r > MAX_RETRIES then
    return nil, errors.config("max_retries", "must be a whole number from 0 to " .. MAX_RETRIES)
  end

  o.utc_offset_seconds = parse_offset(o.utc_offset)
  if not o.utc_offset_seconds then
    return nil, errors.config("utc_offset", 'must look like "+08:00" (hours up to 14)')
  end
  if not nonempty_string(o.version) then
    return nil, errors.config("version", 'must be a non-empty string such as "2.0"')
  end
  for _, name in ipairs { "ca_file", "proxy", "user_agent" } do
    if o[name] ~= nil and type(o[name]) ~= "string" then
      return nil, errors.config(name, "must be a string or nil")
    end
    if o[name] and o[name]:find("%c") then
      return nil, errors.config(name, "must not contain control characters")
    end
  end
  if o.log ~= nil and type(o.log) ~= "function" then
    return nil, errors.config("log", "must be a function(event) or nil")
  end
  local t = o.transport
  if t ~= nil and t ~= "curl" and t ~= "ngx"
     and not (type(t) == "table" and type(t.request) == "function") then
    return nil, errors.config("transport", 'must be nil, "curl", "ngx" or a table with :request(req)')
  end
  return o
end

return options
