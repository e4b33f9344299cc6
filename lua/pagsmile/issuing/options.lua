-- The client's settings (DESIGN.md "Public API"): checked once, when the client is made.
-- Every problem is a `config` error naming the setting.
local core = require "pagsmile.issuing.core"
local api = require "pagsmile.issuing.api"
local errors = require "pagsmile.issuing.errors"
local http = require "pagsmile.issuing.http"

local options = {}

local DEFAULTS = {
  base_url = api.SANDBOX_URL,
  timeout = http.TIMEOUT,
  max_retries = 2,
  utc_offset = api.DEFAULT_UTC_OFFSET,
  version = api.DEFAULT_VERSION,
}

local KNOWN = {
  app_id = true, partner_id = true, sub_partner_id = true,
  platform_public_key = true, merchant_private_key = true,
  platform_public_key_file = true, merchant_private_key_file = true,
  base_url = true, timeout = true, connect_timeout = true, max_retries = true,
  utc_offset = true, version = true, transport = true,
  ca_file = true, proxy = true, user_agent = true, log = true,
}

-- connect_timeout's default, clamped to timeout: `timeout = 2` alone must just work.
local DEFAULT_CONNECT_TIMEOUT = http.CONNECT_TIMEOUT
local MAX_TIMEOUT = 600
local MAX_RETRIES = 10

local function nonempty_string(v)
  return type(v) == "string" and v:find("%S") ~= nil
end

-- base_url (issue 9 item 6): scheme://host[:port][/path prefix], parsed the way libcurl and
-- the cosocket transport read it, so that the host checked here is the host they connect to.
-- The URL is never echoed in a message: it might carry a password.
local MAX_URL = 2048
local URL_SHAPE = "must look like https://host[:port][/path]"

-- A dotted quad, strictly: no shorthand (127.1), octal (0177) or hex (0x7f) forms.
local function ipv4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  for _, p in ipairs { a, b, c, d } do
    if #p > 3 or (#p > 1 and p:sub(1, 1) == "0") or tonumber(p) > 255 then return nil end
  end
  return tonumber(a)
end

-- Colon-separated hex groups; "" has none.
local function ipv6_groups(s)
  if s == "" then return 0 end
  local n = 0
  for g in (s .. ":"):gmatch("([^:]*):") do
    if not g:find("^%x%x?%x?%x?$") then return nil end
    n = n + 1
  end
  return n
end

-- The text between [ and ]: no zone id (it would need a "%25").
local function ipv6(s)
  local v4 = s:match(":(%d+%.%d+%.%d+%.%d+)$")
  if v4 then
    if not ipv4(v4) then return false end
    s = s:sub(1, #s - #v4) .. "0:0" -- the IPv4 tail counts as two groups
  end
  local left, right = s:match("^(.-)::(.*)$")
  if left then
    local l, r = ipv6_groups(left), ipv6_groups(right)
    return l ~= nil and r ~= nil and l + r <= 7
  end
  return ipv6_groups(s) == 8
end

-- A DNS name of ASCII labels. One whose last label is a number (or 0x…) is what URL parsers
-- read as an IPv4 address in some shorthand, so it must be a dotted quad or nothing.
local function reg_name(s)
  if #s > 253 then return false end
  local last
  for label in (s .. "."):gmatch("([^.]*)%.") do
    if #label > 63 or not label:find("^[%w_]$") and not label:find("^[%w_][%w_%-]*[%w_]$") then
      return false
    end
    last = label
  end
  return not (last:find("^%d+$") or last:find("^0[xX]%x*$"))
end

local function valid_host(h)
  local inner = h:match("^%[(.*)%]$")
  if inner then return ipv6(inner) end
  return ipv4(h) ~= nil or reg_name(h)
end

local function is_loopback(host)
  return host:lower() == "localhost" or host == "[::1]" or ipv4(host) == 127
end

-- The path prefix the API paths are appended to: RFC 3986 segments, none empty, "." or "..".
local function valid_path(p)
  if p == "" then return true end
  if p:find("[^%w%-%._~!%$&'%(%)%*%+,;=:/%%]") then return false end
  if p:sub(1, 1) ~= "/" or p:gsub("%%%x%x", ""):find("%%") then return false end
  for seg in (p:sub(2) .. "/"):gmatch("([^/]*)/") do
    if seg == "" or seg == "." or seg == ".." then return false end
  end
  return true
end

-- https, or plain http only towards this machine (the local sandbox).
local function check_base_url(url)
  if type(url) ~= "string" then return nil, "must be a string URL" end
  if #url > MAX_URL then return nil, "must be at most " .. MAX_URL .. " bytes" end
  if url:find("[%c%s]") then return nil, "must not contain spaces or control characters" end
  if url:find("[\\\128-\255]") then return nil, "must be ASCII without backslashes" end
  -- An "@" can only mean userinfo ("user:password@host"), or confuse a parser into it.
  if url:find("@", 1, true) then return nil, "must not carry userinfo (user:password@)" end
  if url:find("[?#]") then return nil, "must not carry a query or a fragment" end
  url = url:gsub("/+$", "")
  -- split as the transports split it (no "@", "?" or "#" is left to tell them apart)
  local scheme, host, port, path = http.split_url(url)
  if not scheme or (scheme ~= "https" and scheme ~= "http") then return nil, URL_SHAPE end
  if host == "" or not valid_host(host) then
    return nil, "must name a host: a DNS name, an IPv4 address or an [IPv6] address"
  end
  if port ~= "" then
    local n = port:match("^:(%d%d?%d?%d?%d?)$")
    if not n or tonumber(n) < 1 or tonumber(n) > 65535 then
      return nil, "must have a port from 1 to 65535 (or none)"
    end
  end
  if not valid_path(path) then
    return nil, "may carry a path prefix of plain /segments only"
  end
  if scheme == "https" then return url end
  if is_loopback(host) then return url end
  return nil, "must use https (plain http is allowed only for 127.0.0.0/8, localhost and [::1])"
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
  if type(v) ~= "number" then
    return errors.config(name, "must be a number of seconds, not a " .. type(v))
  end
  if v ~= v or v <= 0 or v > limit then
    return errors.config(name, "must be a number of seconds above 0 and at most " .. limit)
  end
end

-- A setting of the wrong type says which type it wants (issue 10 item 7: `app_id = 12345`
-- is not "missing").
local function wrong_type(name, v, wanted)
  return errors.config(name, "must be " .. wanted .. ", not a " .. type(v))
end

-- An unknown setting's name as an error may show it (issue 9 item 7). A config loaded with
-- names and values swapped has values for names, a private key among them: a long name, or
-- one that looks like PEM or Base64, is shown by its length only.
local MAX_NAME = 40
local BASE64_RUN = ("[%w+/=]"):rep(24)
local function shown_name(k)
  if type(k) == "string" and (#k > MAX_NAME or k:find("-----", 1, true) or k:find(BASE64_RUN)) then
    return "<a " .. #k .. "-character string>"
  end
  return errors.printable(k, MAX_NAME)
end

-- Keys come as text (`platform_public_key`) or as a file read here (`..._file`, issue 10
-- item 4). Text where a path belongs, or a path where text belongs, is named as such; key
-- text is never echoed, whichever setting it was given to.
local MAX_KEY_FILE = 64 * 1024
local MAX_PATH = 4096

local KEYS = {
  { name = "platform_public_key", slot = "platform_key", parse = core.public_key,
    required = "is required (the platform's RSA public key, PEM or Base64, from the "
      .. "dashboard), or platform_public_key_file" },
  { name = "merchant_private_key", slot = "merchant_key", parse = core.private_key,
    required = "is required (your RSA private key; issuing.keygen() makes a pair), or "
      .. "merchant_private_key_file" },
}

-- PEM, several lines, or a long run of Base64: key text, not a path.
local function key_text(v)
  return v:find("-----", 1, true) or v:find("[\r\n]") or (#v >= 200 and v:find("^[%w+/=]+$"))
end

-- A short single line that starts like a path or ends like a key file's name. (Key text
-- cannot: PEM starts with "-----", Base64 DER with "MII" and is hundreds of bytes long.)
local function looks_like_path(v)
  if #v > 256 or v:find("[\r\n]") then return false end
  return v:find("^[/~]") or v:find("^%.%.?/") or v:find("%.pem%s*$") or v:find("%.key%s*$")
    or v:find("%.der%s*$")
end

local function read_key_file(name, path, key_name)
  if type(path) ~= "string" then return nil, wrong_type(name, path, "a string (a file path)") end
  if key_text(path) then
    return nil, errors.config(name, "holds key text, not a file path: use " .. key_name)
  end
  if not path:find("%S") or #path > MAX_PATH or path:find("%z") then
    return nil, errors.config(name, "must be a file path")
  end
  local f, msg = io.open(path, "rb")
  if not f then return nil, errors.config(name, "cannot be read: " .. tostring(msg)) end
  local text, rerr = f:read(MAX_KEY_FILE + 1)
  f:close()
  if not text then
    return nil, errors.config(name, rerr and ("cannot be read: " .. tostring(rerr)) or "is empty")
  end
  if #text > MAX_KEY_FILE then return nil, errors.config(name, "is too large for a key file") end
  return text
end

-- The parsed key of setting k, or nil and a config error naming the setting given.
local function load_key(o, k)
  local file_name = k.name .. "_file"
  local text, file, source = o[k.name], o[file_name], k.name
  if file ~= nil then
    if text ~= nil then
      return nil, errors.config(file_name, "set " .. k.name .. " or " .. file_name .. ", not both")
    end
    local e
    text, e = read_key_file(file_name, file, k.name)
    if not text then return nil, e end
    source = file_name
  elseif text ~= nil and type(text) ~= "string" then
    return nil, wrong_type(k.name, text, "a string: the key's PEM or Base64 text (or set "
      .. file_name .. ")")
  elseif not nonempty_string(text) then
    return nil, errors.config(k.name, k.required)
  elseif looks_like_path(text) then
    return nil, errors.config(k.name, "looks like a file path: use " .. file_name)
  end
  local key, msg = k.parse(text)
  if not key then return nil, errors.config(source, msg) end
  return key
end

-- Returns the normalised settings with parsed keys, or nil and a config error.
function options.check(opts)
  if type(opts) ~= "table" then
    return nil, errors.config("options", "issuing.new expects a table of settings")
  end
  for k, v in pairs(opts) do
    if not KNOWN[k] then
      return nil, errors.config(shown_name(k), "is not a setting of issuing.new"
        .. (KNOWN[v] and " (are names and values swapped?)" or ""))
    end
  end
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end

  for _, name in ipairs { "app_id", "partner_id" } do
    local v = o[name]
    if v ~= nil and type(v) ~= "string" then
      return nil, wrong_type(name, v, "a string (quote it)")
    end
    if not nonempty_string(v) then
      return nil, errors.config(name, "is required (a non-empty string from the dashboard)")
    end
  end
  if o.sub_partner_id ~= nil and type(o.sub_partner_id) ~= "string" then
    return nil, errors.config("sub_partner_id", "must be a string or nil")
  end

  local msg
  for _, k in ipairs(KEYS) do
    o[k.slot], msg = load_key(o, k)
    if not o[k.slot] then return nil, msg end
    -- The key text and the path are not kept: the parsed key is all the client needs.
    o[k.name], o[k.name .. "_file"] = nil, nil
  end

  o.base_url, msg = check_base_url(o.base_url)
  if not o.base_url then return nil, errors.config("base_url", msg) end

  local e = check_seconds(o.timeout, "timeout", MAX_TIMEOUT)
  if e then return nil, e end
  if o.connect_timeout == nil then
    o.connect_timeout = math.min(DEFAULT_CONNECT_TIMEOUT, o.timeout)
  end
  e = check_seconds(o.connect_timeout, "connect_timeout", MAX_TIMEOUT)
  if e then return nil, e end
  if o.connect_timeout > o.timeout then
    return nil, errors.config("connect_timeout", "must not exceed timeout")
  end
  local r = o.max_retries
  if type(r) ~= "number" then return nil, wrong_type("max_retries", r, "a number") end
  if r ~= math.floor(r) or r < 0 or r > MAX_RETRIES then
    return nil, errors.config("max_retries", "must be a whole number from 0 to " .. MAX_RETRIES)
  end

  if type(o.utc_offset) ~= "string" then
    return nil, wrong_type("utc_offset", o.utc_offset, 'a string like "+08:00"')
  end
  o.utc_offset_seconds = parse_offset(o.utc_offset)
  if not o.utc_offset_seconds then
    return nil, errors.config("utc_offset", 'must look like "+08:00" (hours up to 14)')
  end
  if type(o.version) ~= "string" then
    return nil, wrong_type("version", o.version, 'a string such as "2.0"')
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
  if t ~= nil and type(t) ~= "string" and type(t) ~= "table" then
    return nil, wrong_type("transport", t, 'a string ("curl" or "ngx"), a table with :request(req), or nil')
  end
  if t ~= nil and t ~= "curl" and t ~= "ngx"
     and not (type(t) == "table" and type(t.request) == "function") then
    return nil, errors.config("transport", 'must be nil, "curl", "ngx" or a table with :request(req)')
  end
  return o
end

-- For the wait options of the client's calls.
options.shown_name = shown_name

return options
