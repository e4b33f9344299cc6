-- luacheck: globals ngx
-- The flow a merchant runs around the apply (spec 74), the same code in the busted process
-- (libcurl) and inside nginx (cosockets, through handler() below): create a cardholder,
-- upload the ID and the proof of address, wait for the approval, apply with that holder_id,
-- read the card's details, change its limit, top it up, see the balance, revoke it, and see
-- a further top-up refused. Returns a summary of plain values (no PAN, no CVV: `pan_matches`
-- and `luhn` say what the spec needs of the full PAN).
local issuing = require "pagsmile.issuing"

local M = {}

local function mask(pan) return pan:sub(1, 6) .. "******" .. pan:sub(-4) end

local function luhn_ok(pan)
  local sum, n = 0, #pan
  for i = n, 1, -1 do
    local d = tonumber(pan:sub(i, i))
    if (n - i) % 2 == 1 then d = d * 2 if d > 9 then d = d - 9 end end
    sum = sum + d
  end
  return sum % 10 == 0
end

local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

-- Each step's failure ends the flow with the step's name and the error's message.
local function step(s, name, result, err)
  if not result then error({ step = name, message = tostring(err), sub_code = err and err.sub_code }, 0) end
  s.steps[#s.steps + 1] = name
  return result
end

--- input: { holder, id_hex (the ID document's bytes, hex), pay_account_num, order_no,
-- topup_order_no, refused_order_no }; sleep(seconds).
function M.run(client, input, sleep)
  local s = { steps = {}, audits = {} }
  local ok, failure = pcall(function()
    local h = step(s, "create_holder", client:create_holder(input.holder))
    s.holder_id, s.audits[1] = h.holder_id, h.audit
    step(s, "upload id", client:upload_holder_document { holder_id = h.holder_id, file_type = 1,
      file_name = "passport.jpg", file_content = unhex(input.id_hex) })
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write("%PDF-1.4 utility bill\n", ("\0\1\2"):rep(500))
    f:close()
    local up, uerr = client:upload_holder_document { holder_id = h.holder_id, file_type = 2,
      file_name = "bill.pdf", file_path = path }
    os.remove(path)
    step(s, "upload address", up, uerr)
    for _ = 1, 50 do
      local q = step(s, "query_holder", client:query_holder { holder_id = h.holder_id })
      if s.audits[#s.audits] ~= q.audit then s.audits[#s.audits + 1] = q.audit end
      if q.approved then break end
      sleep(0.05)
    end
    local card = step(s, "apply_card", client:apply_card { order_no = input.order_no, card_type = 1,
      holder_id = h.holder_id, card_bin = "658705", card_limit = { daily_transactions = 10,
      single_amount = "50.00", daily_amount = "100.00", monthly_amount = "500.00" } })
    s.card_token, s.card_pan, s.card_holder_id = card.card_token, card.card_pan, card.holder_id
    local info = step(s, "query_card_info", client:query_card_info(card.card_token))
    local full = info:reveal().card_pan
    s.pan_matches, s.luhn, s.pan_length = mask(full) == card.card_pan, luhn_ok(full), #full
    s.info_shows_pan = tostring(info):find(full, 1, true) ~= nil
    local limit = step(s, "query_card_limit", client:query_card_limit { card_token = card.card_token })
    s.daily_before = limit.daily_amount
    step(s, "update_card_limit", client:update_card_limit { limit_id = limit.limit_id,
      card_token = card.card_token, daily_transactions = 20, single_amount = "80.00",
      daily_amount = "250.00", monthly_amount = "900.00" })
    s.daily_after = step(s, "query_card_limit",
      client:query_card_limit { card_token = card.card_token }).daily_amount
    s.remaining = step(s, "query_remaining_limit",
      client:query_remaining_limit { card_token = card.card_token }).daily_remaining_amount
    local bal = step(s, "query_card_balance", client:query_card_balance(card.card_token))
    s.balance_before = bal.by_currency.USD.balance
    local tx = step(s, "recharge", client:recharge { pay_account_num = input.pay_account_num,
      card_token = card.card_token, order_no = input.topup_order_no, amount = "25.00", currency = "USD" })
    s.transaction_id = tx.transaction_id
    s.balance_after = step(s, "query_card_balance",
      client:query_card_balance(card.card_token)).by_currency.USD.balance
    step(s, "revoke_card", client:revoke_card(card.card_token))
    local again, err = client:recharge { pay_account_num = input.pay_account_num,
      card_token = card.card_token, order_no = input.refused_order_no, amount = "1.00", currency = "USD" }
    s.after_revoke = again and "moved" or err.sub_code
  end)
  if not ok then s.failure = failure end
  return s
end

--- Inside nginx: POST { options, input } -> the summary as JSON (a client per request).
function M.handler()
  require("spec.support.calls").serve(function(req)
    local client = assert(issuing.new(req.options))
    local s = M.run(client, req.input, ngx.sleep)
    client:close()
    return s
  end)
end

return M
