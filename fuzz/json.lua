-- Target "json": bytes from the network through the core's JSON decoder; whatever decodes
-- and encodes again must be stable: encode(decode(e)) == e for e = encode(decode(input)).
local core = require "pagsmile.issuing.core"

return function(text)
  local value, msg = core.json_decode(text)
  if value == nil then
    assert(type(msg) == "string" and #msg > 0, "decode: refused without a message")
    return
  end
  local e1 = core.json_encode(value)
  if e1 == nil then return end -- deeper than the encoder's limit, or a lone null sentinel
  local again = core.json_decode(e1)
  assert(again ~= nil, "decode refused what encode wrote")
  local e2 = core.json_encode(again)
  assert(e2 == e1, "encode(decode(e)) ~= e")
end
