--- pagsmile.issuing: issue payment cards through the Pagsmile Issuing Card API.
--
--     local issuing = require "pagsmile.issuing"
--     local client = assert(issuing.new { app_id = ..., partner_id = ..., ... })
--     local card, err = client:apply_card { order_no = ..., card_type = 1, holder = { ... } }
--
-- Every setting, result field and error field is in the API reference (`make doc`,
-- docs/api.luadoc); README.md tells how to use them.
-- @module pagsmile.issuing
local core = require "pagsmile.issuing.core"
local api = require "pagsmile.issuing.api"
local Client = require "pagsmile.issuing.client"
local endpoints = require "pagsmile.issuing.endpoints"
local json = require "pagsmile.issuing.json"
local schema = require "pagsmile.issuing.schema"

-- Inside nginx, load both transports now: `require "pagsmile.issuing"` runs in init_by_lua,
-- as root, and the workers (often `nobody`) may not be able to read the library's files
-- later (a clone under /root, say).
if rawget(_G, "ngx") then
  require "pagsmile.issuing.transport.ngx"
  require "pagsmile.issuing.transport.curl"
end

local issuing = {
  _VERSION = "pagsmile-issuing " .. core._VERSION,
  SANDBOX_URL = api.SANDBOX_URL,
  ORDER_STATUS = api.ORDER_STATUS,
}

--- Makes a client; keys are parsed here, once. Returns client or nil, err (kind "config").
-- @tparam settings options see @{settings}
-- @treturn[1] Client
-- @return[2] nil
-- @treturn[2] error kind `"config"`, `err.field` naming the setting
function issuing.new(options)
  return Client.new(options)
end

--- A new 2048-bit merchant key pair: private PEM (PKCS#8), public PEM (SPKI), and the public
-- key as the bare Base64 a dashboard takes.
-- @treturn string private key, PEM: keep it secret (the `merchant_private_key` setting)
-- @treturn string public key, PEM
-- @treturn string public key, bare Base64: paste it into the dashboard
function issuing.keygen()
  return core.keygen()
end

--- Every violation of biz_data for an endpoint, without a client or a network: a dry run.
-- At most one violation per field, in the order the client checks (the first is the error
-- `apply_card` would return). Messages never quote the values.
-- @tparam string endpoint an endpoint's name: `"apply_card"`, `"query_apply_result"`,
-- `"create_holder"`, `"recharge"`... (an unknown name raises, listing them all)
-- @tparam biz_data biz_data the table to check
-- @treturn[1] boolean `true` when it is valid
-- @return[2] nil
-- @treturn[2] {violation,...} each `{ field = string, rule = string, reason = string, message = string }`
function issuing.validate(endpoint, biz_data)
  local ep = type(endpoint) == "string" and endpoints[endpoint]
  if not ep then
    local names = {}
    for name in pairs(endpoints) do names[#names + 1] = name end
    table.sort(names)
    error('pagsmile.issuing.validate: unknown endpoint "' .. tostring(endpoint)
      .. '" (' .. table.concat(names, ", ") .. ')', 2)
  end
  if type(biz_data) ~= "table" then
    error("pagsmile.issuing.validate: biz_data must be a table", 2)
  end
  local clean, violations = schema.validate_all(ep.schema, biz_data)
  if not clean then return nil, violations end
  return true
end

--- A 64-bit id for biz_data on runtimes without 64-bit integers (5.1, LuaJIT): accepts a
-- decimal string. Plain integers and decimal strings are accepted as ids anyway.
-- @function long
-- @tparam string|int v a decimal string, an integer (within 2^53 on 5.1/LuaJIT), a long, or
-- LuaJIT's `123LL` (issue 11 item 6: it works where `apply_card{holder_id = 123LL}` did)
-- @treturn[1] userdata the id; `tostring` gives its decimal digits
-- @return[2] nil
-- @treturn[2] string why `v` is not a 64-bit integer
issuing.long = json.long

return issuing
