-- Target "keys": key text as a merchant pastes it into the settings (PEM or bare Base64),
-- parsed as the platform public key and as the merchant private key.
local core = require "pagsmile.issuing.core"

local function check(k, msg, want_private)
  if k == nil then
    assert(type(msg) == "string" and #msg > 0, "a refused key without a message")
    return
  end
  assert(k:bits() == 2048, "a key of the wrong size was accepted")
  assert(k:is_private() == want_private, "a key of the wrong kind was accepted")
  assert(tostring(k):find("RSA%-2048"), "bad __tostring")
  k:close()
  k:close() -- idempotent
  assert(tostring(k):find("closed"), "close did not close")
end

return function(text)
  local k, msg = core.public_key(text)
  check(k, msg, false)
  k, msg = core.private_key(text)
  check(k, msg, true)
end
