-- Shared helpers for specs: throwaway keys, files, and the openssl command line.
local core = require "pagsmile.issuing.core"
local nginx = require "sandbox.nginx"

local helpers = {}

helpers.read_file, helpers.write_file, helpers.tmpdir = nginx.read_file, nginx.write_file, nginx.tmpdir
-- A loopback port nobody listens on now; whether a process id is still running.
helpers.free_port, helpers.alive = nginx.free_port, nginx.alive

-- Polls fn until it returns a true value (returned) or `seconds` (default 10) pass (nil).
function helpers.wait_for(fn, seconds)
  local deadline = core.monotime() + (seconds or 10)
  repeat
    local v = fn()
    if v then return v end
    core.sleep(0.02)
  until core.monotime() > deadline
  return nil
end

-- The specs' one HTTP client (luasocket, over loopback): method, url, body (a string or
-- nil), headers (a table or nil; Content-Length is added for a body). Returns the status
-- code (or nil and luasocket's error), the body text and the answer's headers (a table).
function helpers.http(method, url, body, headers)
  local http, ltn12 = require "socket.http", require "ltn12"
  local out = {}
  headers = headers or {}
  if body then headers["Content-Length"] = tostring(#body) end
  local _, code, h = http.request {
    url = url, method = method, headers = headers,
    source = body and ltn12.source.string(body) or nil, sink = ltn12.sink.table(out),
  }
  return code, table.concat(out), h or {}
end

--- POSTs `value` as JSON to a spec's nginx runner and returns its JSON answer, decoded
-- (long ids kept exact); anything but a 200 fails the spec with the runner's words.
function helpers.post_json(url, value)
  local json = require "pagsmile.issuing.json"
  local code, body = helpers.http("POST", url, assert(json.encode(value)),
    { ["Content-Type"] = "application/json" })
  assert(code == 200, "the runner answered " .. tostring(code) .. ": " .. tostring(body):sub(1, 2000))
  return assert(json.decode(body))
end

-- Settings issuing.new accepts (this process's keys, an unused loopback URL); fields in
-- `over` replace its own (helpers.NIL removes one).
function helpers.settings(over)
  local o = {
    app_id = "app", partner_id = "partner",
    platform_public_key = helpers.keypair("platform").public_pem,
    merchant_private_key = helpers.keypair("merchant").private_pem,
    base_url = "http://127.0.0.1:1",
  }
  for k, v in pairs(over or {}) do
    if v == helpers.NIL then o[k] = nil else o[k] = v end
  end
  return o
end

-- issuing.new(helpers.settings(over)) refuses with a config error naming `field` (and a
-- message matching `pattern`, if given); returns the error.
function helpers.refused_setting(over, field, pattern)
  local check = require "luassert"
  local client, err = require("pagsmile.issuing").new(helpers.settings(over))
  check.is_nil(client)
  check.equal("config", err.kind)
  check.equal(field, err.field)
  if pattern then check.matches(pattern, err.message) end
  return err
end

-- Runs a shell command; returns its stdout and whether it succeeded.
function helpers.sh(cmd)
  local p = io.popen(cmd .. " 2>/dev/null; echo \"::$?\"")
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)::(%d+)%s*$")
  return body, tonumber(rc) == 0
end

-- Key pairs are slow to make; each spec process makes each named pair once.
local pairs_cache = {}
function helpers.keypair(name)
  name = name or "default"
  if not pairs_cache[name] then
    local priv, pub, b64 = core.keygen()
    pairs_cache[name] = { private_pem = priv, public_pem = pub, public_b64 = b64 }
  end
  return pairs_cache[name]
end

-- PEM body → its Base64 lines joined (the dashboard form).
function helpers.pem_body(pem)
  return (pem:gsub("%-%-%-%-%-[^\n]*%-%-%-%-%-", ""):gsub("%s", ""))
end

function helpers.hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

function helpers.unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

function helpers.b64decode(s, dir)
  local f = dir .. "/b64.in"
  helpers.write_file(f, s)
  local out = helpers.sh("base64 -d " .. f)
  return out
end

local seq = 0
-- A unique order_no for this spec process.
function helpers.order_no(tag)
  seq = seq + 1
  return ("%s-%d-%d-%d"):format(tag or "T", os.time(), math.random(1, 999999), seq)
end

-- The specs' one cardholder (a valid `holder` of SPEC.md §5); fields in `over` replace its
-- own.
function helpers.holder(over)
  local h = {
    first_name = "Ana", last_name = "Souza", mobile = "+5511987654321",
    email = "ana.souza@example.com", id_type = 1, id_no = "39053344705",
    birthday = "1990-04-12", nationality_code = "BR",
    address = {
      line = "Avenida Paulista, 1578", postal_code = "01310200",
      city_name = "Sao Paulo", state = "Sao Paulo", country_code = "BR",
    },
  }
  for k, v in pairs(over or {}) do h[k] = v end
  return h
end

function helpers.limits()
  return { daily_transactions = 20, single_amount = "500.00", daily_amount = "1000.00",
           monthly_amount = "5000.00" }
end

-- A valid Apply For a Card body with a new cardholder; fields in `over` replace its own
-- (helpers.NIL removes one).
helpers.NIL = {}
function helpers.biz(over)
  local b = { order_no = helpers.order_no(), card_type = 1, holder = helpers.holder() }
  for k, v in pairs(over or {}) do
    if v == helpers.NIL then b[k] = nil else b[k] = v end
  end
  return b
end

-- A local sandbox and a client pointed at it (extra client settings in `client_opts`).
function helpers.start_client(launch_opts, client_opts)
  local sb = require("sandbox.launch").start(launch_opts or {})
  local o = sb:client_options()
  for k, v in pairs(client_opts or {}) do o[k] = v end
  local client, err = require("pagsmile.issuing").new(o)
  if not client then sb:stop() error(tostring(err)) end
  return sb, client
end

function helpers.stop_client(sb, client)
  if client then client:close() end
  if sb then sb:stop() end
end

-- Total requests the sandbox has seen on its API paths.
function helpers.api_requests(sb)
  local n = 0
  for path, count in pairs(sb:stats().requests or {}) do
    if path:find("^/issuing/") then n = n + count end
  end
  return n
end

return helpers
