-- The cost of the C core's seal and open, and of a whole apply_card on the client side,
-- next to the RSA-2048 operations they cannot avoid (`openssl speed rsa2048`).
--   make bench   (or: tools/bench bench/core.lua)
local core = require "pagsmile.issuing.core"
local envelope = require "pagsmile.issuing.envelope"
local issuing = require "pagsmile.issuing"
local helpers = require "helpers"

local now = core.monotime

local function per_op(n, f)
  for _ = 1, math.max(1, n // 20) do f() end -- warm-up
  local t0 = now()
  for _ = 1, n do f() end
  return (now() - t0) / n
end

local function us(s) return ("%8.1f µs"):format(s * 1e6) end

-- openssl's own figures for the floor: sign = the private-key operation (an open's RSA
-- decryption), verify = the public-key operation (a seal's RSA encryption).
local function openssl_speed()
  local p = io.popen("openssl speed -seconds 2 rsa2048 2>/dev/null")
  local out = p:read("*a")
  p:close()
  local sign, verify = out:match("rsa%s+2048 bits%s+([%d.]+)s%s+([%d.]+)s")
  return tonumber(sign), tonumber(verify)
end

local platform, merchant = helpers.keypair("platform"), helpers.keypair("merchant")
local platform_pub = core.public_key(platform.public_pem)
local merchant_pub, merchant_priv = core.public_key(merchant.public_pem), core.private_key(merchant.private_pem)

local biz = helpers.biz { card_limit = helpers.limits(), initial_balance = "50.00" }
local answer_data = {
  card_id = core.long("9007199254740993"), holder_id = core.long("9007199254740994"),
  holder_name = "Ana Souza", order_no = biz.order_no, order_status = 5, order_count = 1,
  card_token = "tok_8c49a418bb3c0bac6f83993c", card_pan = "658704******1151", card_scheme = 3,
  card_type = 1, is_share_card = false, card_bin = "658704",
}
local rk, sealed = core.seal(merchant_pub, answer_data)
local answer = core.json_encode { code = "10000", msg = "Success", random_key = rk, data = sealed,
                                  sign_type = "RSA", app_id = "app" }

local N = 2000
local sign_s, verify_s = openssl_speed()
local seal_s = per_op(N, function() core.seal(platform_pub, biz) end)
local open_s = per_op(N, function() envelope.open(merchant_priv, answer) end)
local json_s = per_op(N * 10, function() core.json_decode(core.json_encode(biz)) end)

-- The whole client-side cost of one apply_card (validate, seal, envelope, open, card table),
-- with a transport that hands back a prepared answer: it isolates the client's CPU cost from
-- the network and the sandbox.
local canned = { request = function() return { status = 200, body = answer, connects = 0 } end }
local client = assert(issuing.new {
  app_id = "app", partner_id = "partner", base_url = "http://127.0.0.1:1",
  platform_public_key = platform.public_pem, merchant_private_key = merchant.private_pem,
  transport = canned,
})
local apply_s = per_op(N, function() assert(client:apply_card(biz)) end)

print(("%-44s %s"):format("openssl speed rsa2048: private op (sign)", sign_s and us(sign_s) or "n/a"))
print(("%-44s %s"):format("openssl speed rsa2048: public op (verify)", verify_s and us(verify_s) or "n/a"))
print(("%-44s %s"):format("core.seal (apply biz_data, RSA public op)", us(seal_s)))
print(("%-44s %s"):format("envelope.open (apply answer, RSA private op)", us(open_s)))
print(("%-44s %s"):format("JSON encode+decode of the apply biz_data", us(json_s)))
print(("%-44s %s"):format("client:apply_card, client-side CPU", us(apply_s)))
if sign_s and verify_s then
  print(("open / RSA private op: %.2fx   seal / RSA public op: %.2fx   apply / (private+public): %.2fx")
    :format(open_s / sign_s, seal_s / verify_s, apply_s / (sign_s + verify_s)))
end
client:close()
