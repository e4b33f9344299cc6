-- The client's settings for a command: from the environment, a --config file with the same
-- names, and flags; a flag wins over the file, the file over the environment. A missing or
-- refused one is a one-line error naming the variable (exit status 2).
--
--   settings.define(cmd)         adds --config and the flags to an argparse command
--   settings.client(args)        -> an issuing client for the command's arguments
local issuing = require "pagsmile.issuing"
local deps = require "pagsmile.issuing.cli.deps"

local settings = {}

-- name, the issuing.new setting, whether it is required, and the flag's help text.
settings.VARS = {
  { "PAGSMILE_APP_ID", "app_id", true, "The merchant's app id (dashboard)." },
  { "PAGSMILE_PARTNER_ID", "partner_id", true, "The partner id assigned by Pagsmile." },
  { "PAGSMILE_SUB_PARTNER_ID", "sub_partner_id", false, "The sub-partner id, if any." },
  { "PAGSMILE_BASE_URL", "base_url", false, "The API's base URL (default: Pagsmile's sandbox)." },
  { "PAGSMILE_PLATFORM_PUBLIC_KEY_FILE", "platform_public_key_file", true,
    "The platform's public key file (PEM or Base64)." },
  { "PAGSMILE_MERCHANT_PRIVATE_KEY_FILE", "merchant_private_key_file", true,
    "Your merchant private key file (PEM or Base64)." },
  { "PAGSMILE_TIMEOUT", "timeout", false, "Seconds for each call, retries included (default 30)." },
  { "PAGSMILE_CA_FILE", "ca_file", false, "CA bundle for TLS (default: the system's)." },
}

local function flag_of(setting) return "--" .. setting:gsub("_", "-") end

function settings.define(cmd)
  cmd:option("--config", "A file of NAME=value lines with the PAGSMILE_* names below (# starts "
    .. "a comment; `export` and quotes are allowed). Flags win over it, it wins over the "
    .. "environment."):argname("<file>")
  for _, v in ipairs(settings.VARS) do
    cmd:option(flag_of(v[2]), v[4] .. " Or " .. v[1] .. "."):argname("<" .. (v[2]:match("file$")
      and "file" or "value") .. ">")
  end
end

local KNOWN = {}
for _, v in ipairs(settings.VARS) do KNOWN[v[1]] = v end

-- NAME → value from a config file; an unknown name is an error (a misspelt one would
-- otherwise fall back silently to the environment).
local function read_config(path)
  local f, err = io.open(path, "rb")
  if not f then deps.fail(deps.USAGE, "--config: cannot read " .. tostring(err)) end
  local values, n = {}, 0
  for line in f:lines() do
    n = n + 1
    line = line:gsub("\r$", "")
    if not line:find("^%s*#") and line:find("%S") then
      local name, value = line:match("^%s*export%s+([%w_]+)%s*=(.*)$")
      if not name then name, value = line:match("^%s*([%w_]+)%s*=(.*)$") end
      if not name then
        f:close()
        deps.fail(deps.USAGE, ("%s:%d: not a NAME=value line"):format(path, n))
      end
      if not KNOWN[name] then
        f:close()
        deps.fail(deps.USAGE, ("%s:%d: %s is not one of the settings (%s)"):format(path, n, name,
          "PAGSMILE_APP_ID, PAGSMILE_PARTNER_ID, ... see --help"))
      end
      value = value:match("^%s*(.-)%s*$")
      value = value:match('^"(.*)"$') or value:match("^'(.*)'$") or value
      values[name] = value
    end
  end
  f:close()
  return values
end

--- The settings for issuing.new, and where each came from (setting → "--flag", "--config
-- FILE" or "the environment").
function settings.resolve(args, getenv)
  getenv = getenv or os.getenv
  local file = args.config and read_config(args.config) or {}
  local o, from = {}, {}
  for _, v in ipairs(settings.VARS) do
    local name, setting, required = v[1], v[2], v[3]
    local value, source = args[setting], flag_of(setting)
    if value == nil or value == "" then value, source = file[name], "--config " .. tostring(args.config) end
    if value == nil or value == "" then value, source = getenv(name), "the environment" end
    if value == "" then value = nil end
    if value == nil and required then
      deps.fail(deps.USAGE, name .. " is not set (set it in the environment or a --config file, "
        .. "or pass " .. flag_of(setting) .. ")")
    end
    if value ~= nil and setting == "timeout" then
      local n = tonumber(value)
      if not n then deps.fail(deps.USAGE, name .. " (" .. source .. ") must be a number of seconds") end
      value = n
    end
    o[setting], from[setting] = value, source
  end
  return o, from
end

--- A client for the command's settings, or a one-line failure naming the variable.
function settings.client(args, getenv)
  local o, from = settings.resolve(args, getenv)
  local client, err = issuing.new(o)
  if client then return client end
  local field = err.field and err.field:gsub("^(.-_key)$", "%1_file")
  for _, v in ipairs(settings.VARS) do
    if v[2] == field then
      deps.fail(deps.USAGE, v[1] .. " (" .. from[field] .. "): " .. err.message)
    end
  end
  deps.fail(deps.USAGE, err.message)
end

return settings
