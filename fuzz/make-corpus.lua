-- Seed corpus for the fuzz targets, from real answers of the local sandbox:
--   lua5.4 fuzz/make-corpus.lua [outdir]     (make fuzz runs it; default build/fuzz-corpus)
-- Writes <outdir>/open (answer bodies: apply, query, errors, faults, and the same answers
-- re-sealed for the harness's fixed session), <outdir>/json (bodies and decrypted data)
-- and <outdir>/keys (good and malformed keys), plus the sandbox's throwaway merchant private
-- key at common.KEY_FILE so the harness can open the sealed answers. All of it lands under
-- build/ (git-ignored): the corpus holds private keys made here and must not be committed.
local issuing = require "pagsmile.issuing"
local core = require "pagsmile.issuing.core"
local curl = require "pagsmile.issuing.transport.curl"
local launch = require "sandbox.launch"
local helpers = require "helpers"
local http = require "socket.http"
local ltn12 = require "ltn12"
local common = require "common"
local hostile = require "support.hostile"

local out = arg[1] or "build/fuzz-corpus"
local counts = {}

local function sh(cmd) assert(helpers.sh(cmd) ~= nil) end

local function seed(target, name, bytes)
  counts[target] = (counts[target] or 0) + 1
  helpers.write_file(("%s/%s/%03d-%s"):format(out, target, counts[target], name), bytes)
end

sh("rm -rf '" .. out .. "' && mkdir -p '" .. out .. "/open' '" .. out .. "/json' '" .. out .. "/keys'")
sh("mkdir -p \"$(dirname '" .. common.KEY_FILE .. "')\"")

local sb = launch.start {}
local ok, err = pcall(function()
  -- The merchant key the answers are sealed for; 0600 like the sandbox's own copy.
  helpers.write_file(common.KEY_FILE, "")
  sh("chmod 600 '" .. common.KEY_FILE .. "'")
  helpers.write_file(common.KEY_FILE, sb.keys.merchant_private)

  local bodies = {}
  local inner = assert(curl.new {})
  local recorder = {
    request = function(_, req)
      local res, e = inner:request(req)
      if res then bodies[#bodies + 1] = { req.url:match("[^/]+$"), res.body } end
      return res, e
    end,
  }
  local opts = sb:client_options()
  opts.transport, opts.max_retries = recorder, 0
  local client = assert(issuing.new(opts))

  -- Successful applies of several shapes, a pending one, queries, duplicate and unknown.
  local done = {}
  for _, over in ipairs {
    {},
    { card_limit = helpers.limits(), initial_balance = "50.00" },
    { holder = helpers.NIL, holder_id = "9007199254740993" },
    { card_bin = "658705", card_type = 2, holder = helpers.NIL, holder_id = 12345 },
  } do
    local biz = helpers.biz(over)
    assert(client:apply_card(biz))
    done[#done + 1] = biz
  end
  local pending = helpers.biz()
  assert(sb:pending(pending.order_no, 2))
  assert(client:apply_card(pending))
  assert(client:query_apply_result(pending.order_no))
  assert(client:query_apply_result(done[1].order_no))
  assert(client:apply_card(done[2]) == nil)                -- duplicate order_no
  assert(client:query_apply_result("NO-SUCH-ORDER") == nil) -- unknown order_no
  -- Faults: an HTML body, an answer sealed for another merchant key, a 503 page.
  for _, kind in ipairs { "garbage", "wrong_key", "http_503" } do
    assert(sb:faults { { kind = kind, after = kind == "http_503" or nil } })
    client:apply_card(helpers.biz())
  end
  assert(sb:faults(nil))
  client:close()

  -- The sandbox's refusals of requests the client would never send.
  local function raw(path, body)
    local chunks = {}
    http.request { url = sb.url .. path, method = "POST", source = ltn12.source.string(body),
                   headers = { ["Content-Type"] = "application/json", ["Content-Length"] = #body },
                   sink = ltn12.sink.table(chunks) }
    bodies[#bodies + 1] = { "raw", table.concat(chunks) }
  end
  raw("/issuing/card/apply", "not json")
  raw("/issuing/card/apply", "{}")
  raw("/issuing/card/apply", core.json_encode { app_id = sb.app_id, partner_id = sb.partner_id,
    random_key = "AAAA", biz_data = "0123456789ABCDEFAAAA", sign_type = "RSA", format = "JSON",
    version = "2.0", timestamp = "2024-01-01 00:00:00", request_id = "r" })
  raw("/issuing/no-such-method", "{}")

  local platform_pub = assert(core.public_key(sb.keys.platform_public))
  local merchant_key = assert(core.private_key(sb.keys.merchant_private))
  for i, b in ipairs(bodies) do
    local name, body = b[1], b[2]
    seed("open", name, body)
    seed("json", name, body)
    seed("open", name .. "-truncated", body:sub(1, #body // 2))
    local env = core.json_decode(body)
    if type(env) == "table" and type(env.data) == "string" and env.random_key then
      local value = core.unseal(merchant_key, env.random_key, env.data)
      if value then
        seed("json", "plaintext-" .. i, core.json_encode(value))
        -- The same data sealed for the harness's session: no random_key, no RSA.
        local _, sealed = core.seal(platform_pub, value, common.SESSION_KEY, common.SESSION_IV)
        env.random_key, env.data = nil, sealed
        seed("open", "session-" .. name, core.json_encode(env))
        seed("open", "session-raw-" .. name, sealed)
        env.data = value
        seed("open", "plaintext-data-" .. name, core.json_encode(env))
      end
    end
  end
end)
sb:stop()
assert(ok, err)

-- Hostile envelopes and JSON written by hand (spec/support/hostile.lua, which specs 03 and
-- 06 assert on too): the shapes the decoder must refuse or survive.
for name, body in pairs(hostile.SEEDS) do
  seed("open", name, body)
  seed("json", name, body)
end

-- Keys: every accepted form, and the malformed ones the parser must refuse.
local dir = helpers.tmpdir("fuzzkeys")
local function openssl(args) sh("cd " .. dir .. " && openssl " .. args .. " 2>/dev/null") end
local priv, pub = core.keygen()
helpers.write_file(dir .. "/priv.pem", priv)
helpers.write_file(dir .. "/pub.pem", pub)
openssl("rsa -in priv.pem -traditional -out priv1.pem")
openssl("rsa -in priv.pem -RSAPublicKey_out -out pub1.pem")
openssl("genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out small.pem")
openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.pem")
openssl("pkey -in ec.pem -pubout -out ecpub.pem")
openssl("pkcs8 -topk8 -in priv.pem -v2 aes-128-cbc -passout pass:x -out enc.pem")
openssl("req -x509 -new -key priv.pem -subj /CN=x -days 1 -out cert.pem")
for _, f in ipairs { "priv", "pub", "priv1", "pub1", "small", "ec", "ecpub", "enc", "cert" } do
  local pem = helpers.read_file(dir .. "/" .. f .. ".pem")
  if pem and pem ~= "" then
    seed("keys", f .. "-pem", pem)
    seed("keys", f .. "-b64", helpers.pem_body(pem))
    seed("keys", f .. "-truncated", pem:sub(1, #pem // 2))
  end
end
seed("keys", "b64-lines", (helpers.pem_body(pub):gsub("(" .. ("."):rep(64) .. ")", "%1\r\n")))
seed("keys", "pem-garbage", "-----BEGIN PUBLIC KEY-----\n%%%%\n-----END PUBLIC KEY-----\n")
seed("keys", "pem-empty", "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n")
seed("keys", "b64-padding", "QUJD====")
seed("keys", "b64-trailing-bits", "QUJ=")
seed("keys", "nul", "MII\0BIjAN")
sh("rm -rf " .. dir)

for _, t in ipairs { "open", "json", "keys" } do
  print(("%s/%s: %d seeds"):format(out, t, counts[t] or 0))
end
