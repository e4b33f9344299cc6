-- pagsmile.issuing: issue payment cards through the Pagsmile Issuing Card API.
--
--   local issuing = require "pagsmile.issuing"
--   local client = assert(issuing.new { app_id = ..., partner_id = ..., ... })
--   local card, err = client:apply_card { order_no = ..., card_type = 1, holder = { ... } }
--
-- See README.md for every setting, the card table and the error kinds.
local core = require "pagsmile.issuing.core"
local api = require "pagsmile.issuing.api"
local Client = require "pagsmile.issuing.client"
local schema = require "pagsmile.issuing.schema"

local issuing = {
  _VERSION = "pagsmile-issuing " .. core._VERSION,
  SANDBOX_URL = api.SANDBOX_URL,
  ORDER_STATUS = api.ORDER_STATUS,
}

-- Makes a client; keys are parsed here, once. Returns client or nil, err (kind "config").
function issuing.new(options)
  return Client.new(options)
end

-- A new 2048-bit merchant key pair: private PEM (PKCS#8), public PEM (SPKI), and the public
-- key as the bare Base64 a dashboard takes.
function issuing.keygen()
  return core.keygen()
end

-- Every violation of biz_data for an endpoint ("apply_card", "query_apply_result"), without
-- a client or a network: true, or nil and a list of { field, rule, reason, message } in the
-- order the client checks (the first is the error apply_card would return). A dry run.
local ENDPOINTS = { apply_card = schema.apply_card, query_apply_result = schema.query_apply_result }

function issuing.validate(endpoint, biz_data)
  local spec = ENDPOINTS[endpoint]
  if not spec then
    error('pagsmile.issuing.validate: unknown endpoint "' .. tostring(endpoint)
      .. '" (apply_card, query_apply_result)', 2)
  end
  if type(biz_data) ~= "table" then
    error("pagsmile.issuing.validate: biz_data must be a table", 2)
  end
  local clean, violations = schema.validate_all(spec, biz_data)
  if not clean then return nil, violations end
  return true
end

-- A 64-bit id for biz_data on runtimes without 64-bit integers (5.1, LuaJIT): accepts a
-- decimal string. Plain integers and decimal strings are accepted as ids anyway.
issuing.long = core.long

return issuing
