-- The envelope of SPEC.md §2, §4 and §7, both directions, in one place (issue 11 item 2):
-- the request we send, the answer we read (success code, api refusal or protocol error),
-- and the notifications the platform sends. The C core keeps the primitives: keys, seal and
-- unseal, JSON. `core.unseal` decodes the decrypted JSON itself, so no plaintext biz_data
-- ever becomes a Lua string here.
local core = require "pagsmile.issuing.core"
local api = require "pagsmile.issuing.api"
local errors = require "pagsmile.issuing.errors"

local envelope = {}

local type, tostring, format, floor = type, tostring, string.format, math.floor
local json_encode, json_decode, seal, unseal = core.json_encode, core.json_decode, core.seal, core.unseal

--- The request body for `biz` (a validated biz_data table), sealed to the platform's key.
-- `o` holds the client's settings (app_id, partner_id, sub_partner_id, version, platform_key),
-- `timestamp` the request's time as SPEC.md §2 writes it. Returns body, request_id, session
-- (the AES key the answer may come back under: wipe it once the answer is read), or nil, err.
function envelope.request(o, biz, timestamp)
  local random_key, biz_data, session = seal(o.platform_key, biz)
  if not random_key then
    return nil, errors.new("validation", "biz_data cannot be encoded: " .. biz_data,
      { field = "biz_data", reason = biz_data })
  end
  local request_id = core.request_id()
  local body = json_encode {
    app_id = o.app_id, partner_id = o.partner_id, sub_partner_id = o.sub_partner_id or "",
    timestamp = timestamp, format = api.FORMAT, version = o.version,
    request_id = request_id, sign_type = api.SIGN_TYPE,
    random_key = random_key, biz_data = biz_data,
  }
  return body, request_id, session
end

-- The envelope's code as text: a string as is, an integral number in decimal (10000 and
-- 10000.0 alike on every runtime: 5.3+ prints 10000.0 as "10000.0"), anything else nil.
local function code_string(v)
  if type(v) == "string" then return v end
  if type(v) ~= "number" or not (v >= -1e15 and v <= 1e15) or v ~= floor(v) then return nil end
  return format("%d", v)
end

-- The platform's words of a refusal, as text when they are text or numbers.
local function text(v)
  local t = type(v)
  if t == "string" or t == "number" then return tostring(v) end
end

-- unseal's words (src/crypto.c) for data that does not decrypt with our private key: the
-- answer was sealed for another key pair (issue 10 item 7 points at the setting).
local function undecryptable(message)
  return message:find("with the merchant private key", 1, true) ~= nil
    or message:find("wrong length for the key", 1, true) ~= nil
end

local function protocol(message)
  return nil, errors.new("protocol", message)
end

--- Reads an answer body (SPEC.md §3 "Receiving", §4): data, envelope on success (the
-- envelope without data and random_key), or nil, err: kind "api" for a refusal (code,
-- msg, sub_code, sub_msg), "protocol" for anything that is not the documented envelope or
-- does not decrypt. `key` is the merchant private key (may be nil), `session` the request's.
function envelope.open(key, body, session)
  if body == "" then return protocol("the answer is empty") end
  local env, msg = json_decode(body)
  if env == nil then return protocol("the answer is not JSON (" .. tostring(msg) .. ")") end
  if type(env) ~= "table" then return protocol("the answer is not a JSON object") end
  local code = code_string(env.code)
  if not code then return protocol("the answer has no code") end
  if code ~= api.SUCCESS then
    return nil, errors.api(code, text(env.msg), text(env.sub_code), text(env.sub_msg))
  end
  local data, sealed = env.data, env.data
  if data == nil or data == "" or data == core.null then
    data = {} -- absent or null: an empty result
  elseif type(data) == "string" then
    local rk = env.random_key
    data, msg = unseal(key, type(rk) == "string" and rk or nil, sealed, session)
    if data == nil then
      local e = errors.new("protocol", "the answer's data " .. msg)
      if undecryptable(msg) then
        e.setting = "merchant_private_key"
        e.message = e.message .. " (check merchant_private_key: does the platform have its "
          .. "public half?)"
      end
      return nil, e
    end
  elseif type(data) ~= "table" then -- a table: plaintext data, as some pages of the docs show
    return protocol("the answer's data is neither a string nor an object")
  end
  env.data, env.random_key = nil, nil
  return data, env
end

--- Reads a notification body (SPEC.md §7) for `partner_id`: biz (the decoded biz_data table),
-- env, sealed (biz_data came encrypted) or nil, err (kind "protocol"). Nothing in it proves
-- who sent it: the caller confirms it with the platform.
function envelope.notification(key, partner_id, raw_body)
  local env, msg = json_decode(raw_body)
  if type(env) ~= "table" then
    return nil, errors.new("protocol", "the notification is not a JSON object"
      .. (msg and (" (" .. msg .. ")") or ""))
  end
  local ctx = { request_id = env.request_id }
  if env.partner_id ~= nil and tostring(env.partner_id) ~= partner_id then
    return nil, errors.new("protocol", "the notification is for another partner_id", ctx)
  end
  local biz = env.biz_data
  local sealed = env.sign_type ~= nil and env.sign_type ~= ""
  if sealed then
    if type(biz) ~= "string" or type(env.random_key) ~= "string" then
      return nil, errors.new("protocol", "an encrypted notification needs random_key and "
        .. "biz_data strings", ctx)
    end
    biz, msg = unseal(key, env.random_key, biz)
    if not biz then
      return nil, errors.new("protocol", "the notification's biz_data " .. msg, ctx)
    end
  elseif type(biz) == "string" then
    biz = json_decode(biz)
  end
  if type(biz) ~= "table" then
    return nil, errors.new("protocol", "the notification has no biz_data object", ctx)
  end
  return biz, env, sealed
end

-- The primitives both sides of the envelope use, for the platform's side (the local
-- emulator, tests) without reaching into the C core: keys from PEM or Base64 text, a key
-- pair, sealing a value to a public key and unsealing it with the private one (SPEC.md §3),
-- a request_id.
envelope.public_key = core.public_key    -- text -> key | nil, message
envelope.private_key = core.private_key  -- text -> key | nil, message
envelope.keygen = core.keygen            -- -> private PEM, public PEM, public Base64
envelope.seal = seal                     -- (public_key, value) -> random_key, data, session
envelope.unseal = unseal                 -- (private_key, random_key, data) -> value | nil, message
envelope.request_id = core.request_id

return envelope
