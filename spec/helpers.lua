-- Shared helpers for specs: throwaway keys, files, and the openssl command line.
local core = require "pagsmile.issuing.core"
local nginx = require "sandbox.nginx"

local helpers = {}

helpers.read_file, helpers.write_file, helpers.tmpdir = nginx.read_file, nginx.write_file, nginx.tmpdir

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

return helpers
