-- A throwaway CA and a server certificate for 127.0.0.1/localhost, made with the openssl
-- command line, for TLS specs and the emulator's --tls. Nothing here is ever committed.
local M = {}

local function sh(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  return ok == true or ok == 0
end

-- dir: an existing private directory; days: validity (default 2). Returns { ca_file, cert_file, key_file } or nil, msg.
-- The server name is also a DNS SAN "127.0.0.1": nginx cosockets check a name with
-- X509_check_host, which does not match IP SANs, while libcurl checks the IP SAN.
function M.make(dir, days)
  days = tostring(math.floor(tonumber(days) or 2))
  local f = assert(io.open(dir .. "/tls-ext.cnf", "wb"))
  f:write("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:127.0.0.1\n",
          "basicConstraints=CA:FALSE\n", "extendedKeyUsage=serverAuth\n")
  f:close()
  local q = "'" .. dir .. "'"
  local steps = {
    "umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -days " .. days .. " -keyout " .. q .. "/ca.key"
      .. " -out " .. q .. "/ca.pem -subj '/CN=pagsmile local emulator test CA'"
      .. " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign",
    "umask 077 && openssl req -newkey rsa:2048 -nodes -keyout " .. q .. "/server.key"
      .. " -out " .. q .. "/server.csr -subj '/CN=localhost'",
    "openssl x509 -req -days " .. days .. " -in " .. q .. "/server.csr -CA " .. q .. "/ca.pem -CAkey "
      .. q .. "/ca.key -CAcreateserial -out " .. q .. "/server.pem -extfile " .. q .. "/tls-ext.cnf",
  }
  for _, cmd in ipairs(steps) do
    if not sh(cmd) then return nil, "openssl failed making the test certificates" end
  end
  os.remove(dir .. "/ca.key")
  return { ca_file = dir .. "/ca.pem", cert_file = dir .. "/server.pem", key_file = dir .. "/server.key" }
end

return M
