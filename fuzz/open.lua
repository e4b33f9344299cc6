-- Target "open": an answer body from the network, as client.lua hands it to the core
-- (envelope.open with the merchant key and the request's session), plus core.unseal on the raw
-- bytes (the notification path's decryption).
local core = require "pagsmile.issuing.core"
local envelope = require "pagsmile.issuing.envelope"
local common = require "common"

local pem = common.read(common.KEY_FILE)
if not pem then
  io.stderr:write("fuzz[open]: ", common.KEY_FILE, " missing (run make fuzz-corpus):",
                  " using a new key; sealed seeds will not decrypt\n")
  pem = core.keygen()
end
local key = assert(core.private_key(pem))
local pub
do
  local _, public_pem = core.keygen() -- any public key: only the session matters
  pub = assert(core.public_key(public_pem))
end
local session = select(3, assert(core.seal(pub, {}, common.SESSION_KEY, common.SESSION_IV)))

local KINDS = { protocol = true, api = true }

return function(body)
  local data, env = envelope.open(key, body, session)
  if data == nil then
    assert(type(env) == "table", "open: no error table")
    assert(KINDS[env.kind], "open: unexpected error kind")
    assert(type(env.message) == "string" and #env.message > 0, "open: no message")
    if env.kind == "api" then
      assert(env.code ~= "10000", "open: an api error with the success code")
    end
  else
    assert(type(data) == "table", "open: data is not a table")
    assert(type(env) == "table", "open: no envelope")
    assert(env.data == nil and env.random_key == nil, "open: sealed fields left in the envelope")
  end
  local value, msg = core.unseal(key, nil, body, session)
  if value == nil then
    assert(type(msg) == "string" and #msg > 0, "unseal: no message")
  end
end
