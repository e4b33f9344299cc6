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

-- A 64-bit id for biz_data on runtimes without 64-bit integers (5.1, LuaJIT): accepts a
-- decimal string. Plain integers and decimal strings are accepted as ids anyway.
issuing.long = core.long

return issuing
