-- A throwaway CA and a server certificate for 127.0.0.1/localhost, made with the openssl
-- command line, for TLS specs and the local emulator's --tls. Nothing here is ever committed.
local M = {}

local function sh(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  return ok == true or ok == 0
end

-- The default server certificate names 127.0.0.1 by an IP SAN only, as a real certificate
-- for an address would: both transports must match it as an address, not as a DNS name.
local DEFAULT_SAN = "IP:127.0.0.1,DNS:localhost"

-- One server key and certificate `<name>.pem`/`<name>.key` signed by the CA in dir.
-- o.san: its subjectAltName; o.expired: its validity ends before it starts.
local function server_cert(dir, name, o, days)
  local q = "'" .. dir .. "'"
  local base = q .. "/" .. name
  local f = assert(io.open(dir .. "/" .. name .. "-ext.cnf", "wb"))
  f:write("subjectAltName=", o.san or DEFAULT_SAN, "\n",
          "basicConstraints=CA:FALSE\n", "extendedKeyUsage=serverAuth\n")
  f:close()
  local steps = {
    "umask 077 && openssl req -newkey rsa:2048 -nodes -keyout " .. base .. ".key"
      .. " -out " .. base .. ".csr -subj '/CN=pagsmile local emulator test server'",
    "openssl x509 -req -days " .. (o.expired and "-1" or days) .. " -in " .. base .. ".csr -CA "
      .. q .. "/ca.pem -CAkey " .. q .. "/ca.key -CAcreateserial -out " .. base .. ".pem"
      .. " -extfile " .. base .. "-ext.cnf",
  }
  for _, cmd in ipairs(steps) do
    if not sh(cmd) then return nil end
  end
  return { cert_file = dir .. "/" .. name .. ".pem", key_file = dir .. "/" .. name .. ".key" }
end

-- dir: an existing private directory. Returns { ca_file, cert_file, key_file, extra } or
-- nil, msg. extra (optional): { name = { san = "DNS:...", expired = true }, ... }, more
-- server certificates from the same CA, returned as extra[name] = { cert_file, key_file }.
-- days: validity (default 2; the emulator's kept certificates ask for more).
function M.make(dir, extra, days)
  days = tostring(math.floor(tonumber(days) or 2))
  local q = "'" .. dir .. "'"
  local ok = sh("umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -days " .. days .. " -keyout "
    .. q .. "/ca.key -out " .. q .. "/ca.pem -subj '/CN=pagsmile local emulator test CA'"
    .. " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign")
  local server = ok and server_cert(dir, "server", {}, days)
  local made = {}
  for name, o in pairs(extra or {}) do
    made[name] = server and server_cert(dir, name, o, days)
    if not made[name] then server = nil end
  end
  os.remove(dir .. "/ca.key")
  if not server then return nil, "openssl failed making the test certificates" end
  return { ca_file = dir .. "/ca.pem", cert_file = server.cert_file, key_file = server.key_file,
           extra = made }
end

return M
