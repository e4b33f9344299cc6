--- pagsmile.issuing.json: the library's JSON, for code that talks to the API around the
-- client (a callback handler, the emulator, tests): the same encoder and decoder the client
-- uses, so long ids stay exact and duplicate keys are refused the same way.
--
--     local json = require "pagsmile.issuing.json"
--     local body = json.encode { order_no = "A1", holder_id = json.long("9007199254740993") }
--
-- `decode` returns value or nil, message; null members of objects are left out, `null` in
-- arrays is `json.null`; integers beyond 2^53 (5.1/LuaJIT) and beyond int64 come back as
-- decimal strings or longs as documented in README's "Long ids".
-- @module pagsmile.issuing.json
local core = require "pagsmile.issuing.core"

local json = {
  encode = core.json_encode,
  decode = core.json_decode,
  null = core.null,
  is_long = core.is_long,
}

local type, match, tostring = type, string.match, tostring

--- A 64-bit integer for JSON: from a decimal string, an integer (within 2^53 on 5.1/LuaJIT),
-- a long, or LuaJIT's `123LL` / `123ULL` (OpenResty code has them). Returns the long, or nil
-- and why `v` is not one.
function json.long(v)
  if type(v) == "cdata" then
    local digits = match(tostring(v), "^(%-?%d+)U?LL$")
    if not digits then return nil, "not a 64-bit integer" end
    v = digits
  end
  return core.long(v)
end

return json
