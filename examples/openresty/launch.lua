-- Starts this example (nginx.conf + merchant.lua) in a throwaway nginx on a free loopback
-- port, pointed at a local sandbox, the way a merchant's deployment would set it up: the
-- settings in environment variables, the keys in private files. For the specs and
-- bench/openresty.lua; runs under any of the four runtimes in the calling process.
--
--   local sb = require("sandbox.launch").start{}
--   local shop = require("examples.openresty.launch").start(sb, { transport = "curl" })
--   -- shop.url, shop.port, shop.prefix, shop.error_log(), shop.stop()
local nginx = require "sandbox.nginx"

local M = {}

local SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"

local function write_private(path, text)
  local f = assert(io.open(path, "wb"))
  f:close()
  assert(os.execute("chmod 600 '" .. path .. "'"))
  f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

--- sb: a sandbox from sandbox.launch. opts (all optional):
--   transport   PAGSMILE_TRANSPORT ("curl" blocks the worker: for comparisons)
--   timeout     PAGSMILE_TIMEOUT in seconds
--   ca_file     lua_ssl_trusted_certificate (default: the sandbox's test CA, else the system's)
--   http        extra directives for the end of the http block (test-only servers)
--   prepare(prefix, vars)  as in sandbox/nginx.lua, for placeholders of `http`
--   log_level
function M.start(sb, opts)
  opts = opts or {}
  local root = nginx.repo_root()
  local conf = assert(nginx.read_file(root .. "/examples/openresty/nginx.conf"))
  if opts.http then
    local n
    conf, n = conf:gsub("}%s*$", function() return opts.http .. "\n}\n" end)
    assert(n == 1, "examples/openresty/nginx.conf does not end with the http block")
  end
  local env = {
    PAGSMILE_APP_ID = sb.app_id,
    PAGSMILE_PARTNER_ID = sb.partner_id,
    PAGSMILE_BASE_URL = sb.url,
    PAGSMILE_CA_FILE = sb.ca_file,
    PAGSMILE_TRANSPORT = opts.transport,
    PAGSMILE_TIMEOUT = opts.timeout,
  }
  local srv = nginx.start {
    name = "merchant",
    log_level = opts.log_level,
    conf = conf,
    env = env,
    prepare = function(prefix, vars)
      local modules = assert(nginx.read_file(root .. "/examples/openresty/debian-modules.conf"))
      nginx.write_file(prefix .. "/conf/debian-modules.conf", modules)
      local dir = prefix .. "/keys"
      assert(os.execute("mkdir -m 700 '" .. dir .. "'"))
      write_private(dir .. "/platform_public.pem", sb.platform_public_key)
      write_private(dir .. "/merchant_private.pem", sb.merchant_private_key)
      env.PAGSMILE_PLATFORM_PUBLIC_KEY_FILE = dir .. "/platform_public.pem"
      env.PAGSMILE_MERCHANT_PRIVATE_KEY_FILE = dir .. "/merchant_private.pem"
      vars.workers = "1"
      vars.ca_file = opts.ca_file or sb.ca_file or SYSTEM_CAS
      if opts.prepare then opts.prepare(prefix, vars) end
    end,
  }
  return srv
end

return M
