-- The HTTP facts the client, its settings and both transports share (issue 11 item 6): one
-- URL splitter, one header rule, one set of defaults. Pure Lua, no I/O.
local http = {}

local match, find, lower, gsub = string.match, string.find, string.lower, string.gsub

-- Defaults of a request and of an answer, wherever a setting or a caller leaves them out.
http.TIMEOUT = 30           -- seconds, a whole call
http.CONNECT_TIMEOUT = 5    -- seconds, at most `timeout`
http.MAX_BODY = 1024 * 1024 -- bytes of an answer
http.USER_AGENT = "pagsmile-issuing" -- each transport adds what it runs on

--- scheme (as written), host (an IPv6 address keeps its brackets), port text ("" or what
-- follows the host, ":443"), path (with any query), authority; or nil when `url` is not
-- `scheme://authority...`. Userinfo ("user:password@") is never taken for the host.
function http.split_url(url)
  local scheme, authority, path = match(url, "^(%a[%w+.-]*)://([^/?#]*)([^#]*)")
  if not scheme then return nil end
  local hostport = gsub(authority, "^.*@", "")
  local host, port = match(hostport, "^(%[[^%]]*%])(.*)$")
  if not host then host, port = match(hostport, "^([^:]*)(.*)$") end
  return scheme, host, port, path, authority
end

--- The default port of a scheme.
function http.default_port(scheme)
  return lower(scheme) == "https" and 443 or 80
end

--- "host:port" of a URL, for messages: never its userinfo (a password) nor its path.
function http.target(url)
  local scheme, host, port = http.split_url(url)
  if not scheme then return nil end
  return host .. ":" .. (match(port, "^:(%d+)$") or http.default_port(scheme))
end

-- An HTTP token (RFC 9110 §5.6.2): a header's name.
http.TOKEN = "^[%w!#$%%&'*+.^_`|~-]+$"

--- Whether a request header may be sent as given: a token for a name, and no CR, LF or NUL
-- in the value (either would let it smuggle other headers).
function http.header_ok(name, value)
  return type(name) == "string" and find(name, http.TOKEN) ~= nil
    and not find(tostring(value), "[%z\r\n]")
end

return http
