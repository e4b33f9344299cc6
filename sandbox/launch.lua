-- Starts the local sandbox (lua/pagsmile/issuing/sandbox.lua in a throwaway nginx) with
-- fresh keys, and drives its control API. Used by specs, `make demo` and `make sandbox`;
-- runs under any of the four runtimes in the calling process.
--   local sb = require("sandbox.launch").start{ port = nil, callback_url = nil, tls = false }
--   sb:client_options(); sb:settings{...}; sb:pending(order_no, polls); sb:stats();
--   sb:orders(); sb:reset(); sb:stop(); sb:error_log(); sb:faults{...}
--   launch.start{ port = old.port, keys = old.keys } brings a stopped sandbox back with the
--   same keys, so clients made for the old one work with the new one.
local http = require "socket.http"
local ltn12 = require "ltn12"
local core = require "pagsmile.issuing.core"
local nginx = require "sandbox.nginx"
local tls = require "sandbox.tls"

local M = {}

M.APP_ID = "sandbox-app"
M.PARTNER_ID = "sandbox-partner"

local HTTP = [[
  lua_shared_dict pagsmile_sandbox 16m;
  client_body_buffer_size 1m;
  client_max_body_size 1m;
  init_by_lua_block {
    require("pagsmile.issuing.sandbox").init{
      app_id = "${app_id}", partner_id = "${partner_id}",
      platform_private_key_file = "${prefix}/keys/platform_private.pem",
      merchant_public_key_file = "${prefix}/keys/merchant_public.pem",
      wrong_merchant_public_key_file = "${prefix}/keys/wrong_merchant_public.pem",
    }
  }
  server {
    listen 127.0.0.1:${port}${ssl};
    listen 127.0.0.1:${control_port};
    ${tls_directives}
    location /_sandbox/ {
      content_by_lua_block { require("pagsmile.issuing.sandbox").control() }
    }
    location / {
      content_by_lua_block { require("pagsmile.issuing.sandbox").handle() }
    }
  }
]]

-- Private files: created empty, made 0600, then written.
local function write_private(path, text)
  local f = assert(io.open(path, "wb"))
  f:close()
  os.execute("chmod 600 '" .. path .. "'")
  f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local Sandbox = {}
Sandbox.__index = Sandbox

local function control(self, method, path, value)
  local body = value ~= nil and assert(core.json_encode(value)) or ""
  local out = {}
  local _, code = http.request{
    url = self.control_url .. path,
    method = method,
    source = ltn12.source.string(body),
    headers = { ["Content-Type"] = "application/json", ["Content-Length"] = tostring(#body) },
    sink = ltn12.sink.table(out),
  }
  if code ~= 200 then return nil, "sandbox control " .. path .. " answered " .. tostring(code) end
  return core.json_decode(table.concat(out))
end

--- opts: port (fixed port, else a free one), callback_url, tls (boolean), log_level,
-- keys (the `keys` table of an earlier sandbox: reuse its key pairs instead of new ones).
function M.start(opts)
  opts = opts or {}
  local keys = {}
  local srv = nginx.start{
    name = "sandbox",
    port = opts.port,
    log_level = opts.log_level,
    prepare = function(prefix, vars)
      local dir = prefix .. "/keys"
      assert(os.execute("mkdir -m 700 '" .. dir .. "'"))
      local k = opts.keys or {}
      local platform_private, platform_public = k.platform_private, k.platform_public
      if not platform_private then platform_private, platform_public = core.keygen() end
      local merchant_private, merchant_public = k.merchant_private, k.merchant_public
      if not merchant_private then merchant_private, merchant_public = core.keygen() end
      local wrong_public = k.wrong_merchant_public
      if not wrong_public then wrong_public = select(2, core.keygen()) end
      write_private(dir .. "/platform_private.pem", platform_private)
      write_private(dir .. "/platform_public.pem", platform_public)
      write_private(dir .. "/merchant_private.pem", merchant_private)
      write_private(dir .. "/merchant_public.pem", merchant_public)
      write_private(dir .. "/wrong_merchant_public.pem", wrong_public)
      keys.set = { platform_private = platform_private, platform_public = platform_public,
                   merchant_private = merchant_private, merchant_public = merchant_public,
                   wrong_merchant_public = wrong_public }
      keys.dir = dir
      vars.app_id, vars.partner_id = M.APP_ID, M.PARTNER_ID
      vars.ssl, vars.tls_directives = "", ""
      -- With TLS the control API also answers on a second, plain port (luasocket has no TLS);
      -- without TLS that port is the same server, unused.
      repeat keys.control_port = nginx.free_port() until tostring(keys.control_port) ~= vars.port
      vars.control_port = tostring(keys.control_port)
      if opts.tls then
        local certs = assert(tls.make(prefix))
        keys.ca_file = certs.ca_file
        vars.ssl = " ssl"
        vars.tls_directives = "ssl_certificate " .. certs.cert_file .. ";\n    ssl_certificate_key "
                              .. certs.key_file .. ";"
      end
    end,
    http = HTTP,
  }
  local sb = setmetatable({
    server = srv,
    port = srv.port,
    prefix = srv.prefix,
    url = (opts.tls and "https" or "http") .. "://127.0.0.1:" .. srv.port,
    app_id = M.APP_ID,
    partner_id = M.PARTNER_ID,
    platform_public_key = keys.set.platform_public,
    merchant_private_key = keys.set.merchant_private,
    merchant_public_key = keys.set.merchant_public,
    -- every key pair of this sandbox, private halves included (tests only: they are throwaway)
    keys = keys.set,
    keys_dir = keys.dir,
    ca_file = keys.ca_file,
    tls = opts.tls and true or false,
    control_url = "http://127.0.0.1:" .. (opts.tls and keys.control_port or srv.port),
  }, Sandbox)
  if opts.callback_url then
    local ok, err = sb:settings{ callback_url = opts.callback_url }
    if not ok then sb:stop() error(err) end
  end
  return sb
end

--- The options for issuing.new that point a client at this sandbox.
function Sandbox:client_options()
  return {
    app_id = self.app_id, partner_id = self.partner_id,
    platform_public_key = self.platform_public_key,
    merchant_private_key = self.merchant_private_key,
    base_url = self.url, ca_file = self.ca_file,
  }
end

local function call(self, method, path, value)
  return control(self, method, path, value)
end

function Sandbox:settings(values) return call(self, "POST", "/_sandbox/settings", values or {}) end
function Sandbox:pending(order_no, polls)
  return call(self, "POST", "/_sandbox/orders/" .. order_no .. "/pending", { polls = polls })
end
--- Replaces the fault list (see sandbox.lua); nil or {} clears it. (A JSON null cannot
-- clear a setting: core.json_decode leaves null members out, so false is sent.)
function Sandbox:faults(list)
  return call(self, "POST", "/_sandbox/settings", { faults = list and list[1] and list or false })
end
function Sandbox:stats() return call(self, "GET", "/_sandbox/stats") end
function Sandbox:orders() return call(self, "GET", "/_sandbox/orders") end
function Sandbox:reset() return call(self, "POST", "/_sandbox/reset") end
function Sandbox:error_log() return self.server.error_log() end
function Sandbox:stop()
  if self.stopped then return end
  self.stopped = true
  self.server.stop()
end

return M
