-- Starts the local emulator (pagsmile_emulator.handler in a throwaway nginx) and drives its
-- control API (docs/SANDBOX.md). Used by `pagsmile-issuing emulator`, the specs and
-- `make demo`; runs under any of the four runtimes in the calling process.
--   local sb = require("pagsmile_emulator.launch").start{ port = nil, tls = false }
--   sb:client_options(); sb:settings{...}; sb:pending(order_no, polls, after); sb:complete(no);
--   sb:register_merchant_key(pem); sb:stats(); sb:orders(); sb:reset(); sb:stop();
--   sb:error_log(); sb:faults{...}; sb:random_faults{...}; sb:arrivals()
--   launch.start{ port = old.port, keys = old.keys } brings a stopped emulator back with the
--   same keys, so clients made for the old one work with the new one; keys_dir = DIR does the
--   same across processes (the key files live in DIR, made once).
local http = require "socket.http"
local ltn12 = require "ltn12"
local envelope = require "pagsmile.issuing.envelope"
local json = require "pagsmile.issuing.json"
local nginx = require "pagsmile_emulator.nginx"
local tls = require "pagsmile_emulator.tls"

local M = {}

M.APP_ID = "sandbox-app"
M.PARTNER_ID = "sandbox-partner"
M.PARTNER_ACCOUNT = "104190000004" -- the account top-ups come from (money.lua)

local HTTP = [[
  lua_shared_dict pagsmile_sandbox 64m; # orders, cards and holders of long runs (bench)
  # A document upload is up to 2 MiB, Base64 inside the sealed biz_data: about 3.8 MB.
  client_body_buffer_size 8m;
  client_max_body_size 8m;
  init_by_lua_block {
    require("pagsmile_emulator.handler").init{
      app_id = "${app_id}", partner_id = "${partner_id}",
      platform_private_key_file = "${platform_private_file}",
      merchant_public_key_file = "${merchant_public_file}",
      wrong_merchant_public_key_file = "${prefix}/keys/wrong_merchant_public.pem",
      parent_pid = ${parent_pid}, remove_on_orphan = "${orphan_dir}",
    }
  }
  init_worker_by_lua_block { require("pagsmile_emulator.handler").init_worker() }
  server {
    listen 127.0.0.1:${port}${ssl};
    listen 127.0.0.1:${control_port};
    ${tls_directives}
    location /_sandbox/ {
      content_by_lua_block { require("pagsmile_emulator.handler").control() }
    }
    location / {
      # A client that closes its connection ends its request at once (a hung answer's
      # sleep included), and the log phase keeps the in-flight gauge whatever the ending.
      lua_check_client_abort on;
      content_by_lua_block { require("pagsmile_emulator.handler").handle() }
      log_by_lua_block { require("pagsmile_emulator.handler").finish() }
    }
  }
]]

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

-- Private files: created empty, made 0600, then written.
local function write_private(path, text)
  local f = assert(io.open(path, "wb"))
  f:close()
  os.execute("chmod 600 " .. q(path))
  f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- Key files in a directory of the user's: each pair is made once (private half 0600) and
-- reused at every later start, so scripts and clients keep working across restarts.
local PAIRS = { "platform", "merchant" }

local function key_pair(dir, name)
  local priv_file, pub_file = dir .. "/" .. name .. "_private.pem", dir .. "/" .. name .. "_public.pem"
  local priv, pub = nginx.read_file(priv_file), nginx.read_file(pub_file)
  if not priv and not pub then
    priv, pub = envelope.keygen()
    write_private(priv_file, priv)
    nginx.write_file(pub_file, pub)
    return priv, pub
  end
  if not priv or not pub then
    error(dir .. " has " .. (priv and priv_file or pub_file):match("[^/]+$") .. " but not "
          .. (priv and pub_file or priv_file):match("[^/]+$")
          .. ": restore it, or remove the other to make a new pair", 0)
  end
  -- The halves must belong together: seal with one, open with the other.
  local pk, sk = envelope.public_key(pub), envelope.private_key(priv)
  local rk, data
  if pk and sk then rk, data = envelope.seal(pk, { check = true }) end
  local back = rk and envelope.unseal(sk, rk, data)
  if type(back) ~= "table" or back.check ~= true then
    error(dir .. ": " .. name .. "_private.pem and " .. name .. "_public.pem are not one "
          .. "usable key pair (remove both to make a new pair)", 0)
  end
  return priv, pub
end

local function stable_keys(dir)
  if dir:sub(1, 1) ~= "/" then dir = nginx.repo_root() .. "/" .. dir end
  -- A new directory is private; an existing one is the user's and keeps its mode.
  if not sh("{ test -d " .. q(dir) .. " || mkdir -p -m 700 " .. q(dir) .. "; } 2>/dev/null && test -w "
            .. q(dir)) then
    error("cannot use " .. dir .. " as the keys directory (not a writable directory)", 0)
  end
  local set = {}
  for _, name in ipairs(PAIRS) do
    set[name .. "_private"], set[name .. "_public"] = key_pair(dir, name)
  end
  return dir, set
end

-- Certificates in the keys directory are reused like the keys while they stay valid a day
-- more, so a client's ca_file keeps working across restarts too.
local function stable_tls(dir)
  local tdir = dir .. "/tls"
  local certs = { ca_file = tdir .. "/ca.pem", cert_file = tdir .. "/server.pem",
                  key_file = tdir .. "/server.key" }
  if nginx.read_file(certs.ca_file) and nginx.read_file(certs.key_file)
     and sh("openssl x509 -checkend 86400 -noout -in " .. q(certs.cert_file) .. " >/dev/null 2>&1") then
    return certs
  end
  assert(sh("mkdir -p " .. q(tdir) .. " && chmod 700 " .. q(tdir)))
  return assert(tls.make(tdir, nil, 825))
end

-- This process's id, for the emulator's watchdog (stop when the command is gone).
local function own_pid()
  local stat = nginx.read_file("/proc/self/stat")
  return stat and tonumber(stat:match("^(%d+)"))
end

local Sandbox = {}
Sandbox.__index = Sandbox

local function control(self, method, path, value)
  local body = value ~= nil and assert(json.encode(value)) or ""
  local out = {}
  local _, code = http.request{
    url = self.control_url .. path,
    method = method,
    source = ltn12.source.string(body),
    headers = { ["Content-Type"] = "application/json", ["Content-Length"] = tostring(#body) },
    sink = ltn12.sink.table(out),
  }
  if code ~= 200 then
    local answer = json.decode(table.concat(out))
    local why = type(answer) == "table" and type(answer.error) == "string" and (": " .. answer.error) or ""
    return nil, "emulator control " .. path .. " answered " .. tostring(code) .. why
  end
  return json.decode(table.concat(out))
end

--- opts (all optional):
--   port         a fixed port (else a free one); in use → a one-line error
--   keys_dir     a directory for stable keys: made once (private files 0600), reused after
--   keys         the `keys` table of an earlier emulator: reuse its key pairs
--   tls          serve HTTPS (a test CA: sb.ca_file; kept in keys_dir/tls when keys_dir is set)
--   merchant_public_key   PEM/Base64 text: seal answers for this key (as if registered)
--   callback_url, latency_ms, complete_after, pending_polls   initial settings
--   stop_with_parent      nginx stops (and removes its temp files) once this process is gone
--   log_level
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
      local wrong_public = k.wrong_merchant_public
      if not wrong_public then wrong_public = select(2, envelope.keygen()) end
      write_private(dir .. "/wrong_merchant_public.pem", wrong_public)
      local set
      if opts.keys_dir then
        keys.dir, set = stable_keys(opts.keys_dir)
      else
        local platform_private, platform_public = k.platform_private, k.platform_public
        if not platform_private then platform_private, platform_public = envelope.keygen() end
        local merchant_private, merchant_public = k.merchant_private, k.merchant_public
        if not merchant_private then merchant_private, merchant_public = envelope.keygen() end
        write_private(dir .. "/platform_private.pem", platform_private)
        write_private(dir .. "/platform_public.pem", platform_public)
        write_private(dir .. "/merchant_private.pem", merchant_private)
        write_private(dir .. "/merchant_public.pem", merchant_public)
        set = { platform_private = platform_private, platform_public = platform_public,
                merchant_private = merchant_private, merchant_public = merchant_public }
        keys.dir = dir
      end
      set.wrong_merchant_public = wrong_public
      keys.set = set
      vars.platform_private_file = keys.dir .. "/platform_private.pem"
      vars.merchant_public_file = keys.dir .. "/merchant_public.pem"
      vars.app_id, vars.partner_id = M.APP_ID, M.PARTNER_ID
      vars.parent_pid = opts.stop_with_parent and tostring(own_pid() or "nil") or "nil"
      vars.orphan_dir = prefix
      vars.ssl, vars.tls_directives = "", ""
      -- With TLS the control API also answers on a second, plain port (luasocket has no TLS);
      -- without TLS that port is the same server, unused.
      repeat keys.control_port = nginx.free_port() until tostring(keys.control_port) ~= vars.port
      vars.control_port = tostring(keys.control_port)
      if opts.tls then
        local certs = opts.keys_dir and stable_tls(keys.dir) or assert(tls.make(prefix))
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
    partner_account = M.PARTNER_ACCOUNT,
    platform_public_key = keys.set.platform_public,
    merchant_private_key = keys.set.merchant_private,
    merchant_public_key = keys.set.merchant_public,
    -- every key pair of this emulator, private halves included (tests only: they are throwaway)
    keys = keys.set,
    keys_dir = keys.dir,
    platform_public_key_file = keys.dir .. "/platform_public.pem",
    merchant_private_key_file = keys.dir .. "/merchant_private.pem",
    merchant_public_key_file = keys.dir .. "/merchant_public.pem",
    ca_file = keys.ca_file,
    tls = opts.tls and true or false,
    control_port = opts.tls and keys.control_port or srv.port,
    control_url = "http://127.0.0.1:" .. (opts.tls and keys.control_port or srv.port),
  }, Sandbox)
  local function check(ok, err)
    if not ok then sb:stop() error(err, 0) end
  end
  if opts.merchant_public_key then check(sb:register_merchant_key(opts.merchant_public_key)) end
  local initial = { callback_url = opts.callback_url, latency_ms = opts.latency_ms,
                    complete_after = opts.complete_after, pending_polls = opts.pending_polls }
  if next(initial) then check(sb:settings(initial)) end
  return sb
end

--- The options for issuing.new that point a client at this emulator.
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

local function escape(s)
  return (tostring(s):gsub("[^%w%-_.~]", function(c) return string.format("%%%02X", c:byte()) end))
end

function Sandbox:settings(values) return call(self, "POST", "/_sandbox/settings", values or {}) end
--- The next apply of order_no leaves it processing until its `polls`-th query, or until
-- `after` seconds have passed (then it completes by itself and the callback fires).
function Sandbox:pending(order_no, polls, after)
  return call(self, "POST", "/_sandbox/orders/" .. escape(order_no) .. "/pending",
              { polls = polls, complete_after = after })
end
--- Completes a processing order now (and fires the callback).
function Sandbox:complete(order_no)
  return call(self, "POST", "/_sandbox/orders/" .. escape(order_no) .. "/complete", {})
end
--- Seals answers and callbacks for this merchant public key (PEM or Base64) from now on;
-- false goes back to the emulator's own merchant key.
function Sandbox:register_merchant_key(public_key)
  return call(self, "POST", "/_sandbox/merchant-key", { public_key = public_key })
end
--- Replaces the fault list (see sandbox.lua); nil or {} clears it. (A JSON null cannot
-- clear a setting: json.decode leaves null members out, so false is sent.)
function Sandbox:faults(list)
  return call(self, "POST", "/_sandbox/settings", { faults = list and list[1] and list or false })
end
--- Deals random faults (docs/SANDBOX.md): { rate = 0.25, kinds = {...}, seed = 42, path = "*" };
-- nil or false stops them.
function Sandbox:random_faults(setting)
  return call(self, "POST", "/_sandbox/settings", { random_faults = setting or false })
end
function Sandbox:stats() return call(self, "GET", "/_sandbox/stats") end
--- The arrival time (epoch seconds, ms resolution) of each API request since the last
-- reset, oldest first (the last 100,000).
function Sandbox:arrivals()
  local answer, err = call(self, "GET", "/_sandbox/arrivals")
  if not answer then return nil, err end
  return answer.arrivals
end
function Sandbox:orders() return call(self, "GET", "/_sandbox/orders") end
--- The cardholders, cards (PAN masked) and money ledger (per order_no: requests, moves).
function Sandbox:holders() return call(self, "GET", "/_sandbox/holders") end
function Sandbox:cards() return call(self, "GET", "/_sandbox/cards") end
function Sandbox:ledger() return call(self, "GET", "/_sandbox/ledger") end
--- Approves a cardholder now (its audit notification goes out).
function Sandbox:approve(holder_id)
  return call(self, "POST", "/_sandbox/holders/" .. escape(holder_id) .. "/approve", {})
end
--- Adds spendings to a card: { count, start_date, every_days, amount, currency }.
function Sandbox:spend(card_token, spec)
  return call(self, "POST", "/_sandbox/cards/" .. escape(card_token) .. "/transactions", spec or {})
end
function Sandbox:reset() return call(self, "POST", "/_sandbox/reset") end
function Sandbox:error_log() return self.server.error_log() end
function Sandbox:stop()
  if self.stopped then return end
  self.stopped = true
  self.server.stop()
end

return M
