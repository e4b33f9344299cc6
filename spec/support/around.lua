-- Fixtures of the specs of the calls around the apply (70-74, and 50/51's extensions):
-- unique cardholders, documents, an approved holder, a card, a recharge.
local helpers = require "helpers"

local around = {}

local seq = 0
--- A unique id_no (6 to 20 characters) for this spec process.
function around.id_no()
  seq = seq + 1
  return ("ID%d%04d%02d"):format(os.time() % 100000000, math.random(0, 9999), seq % 100)
end

--- helpers.holder with a fresh id_no; fields in `over` replace its own.
function around.holder(over)
  local h = helpers.holder { id_no = around.id_no() }
  for k, v in pairs(over or {}) do h[k] = v end
  return h
end

--- Bytes of a document: a PNG header, then `n` bytes of every value (zeros included).
function around.png(n)
  local t = { "\137PNG\r\n\26\n" }
  for i = 1, n or 600 do t[#t + 1] = string.char((i * 37) % 256) end
  return table.concat(t)
end

--- A cardholder created, with both documents, approved through the emulator's control API.
function around.approved_holder(client, sb)
  local h = assert(client:create_holder(around.holder()))
  assert(client:upload_holder_document { holder_id = h.holder_id, file_type = 1,
    file_name = "id.png", file_content = around.png() })
  assert(client:upload_holder_document { holder_id = h.holder_id, file_type = 2,
    file_name = "address.pdf", file_content = "%PDF-1.4 proof of address" })
  assert(sb:approve(h.holder_id))
  return h
end

--- A card (its apply's card table) for a new cardholder; fields in `over` go into the apply.
function around.card(client, over)
  return assert(client:apply_card(helpers.biz(over)))
end

--- A valid top-up of `amount` (default "5.00") onto card_token.
function around.topup(sb, card_token, amount)
  return { pay_account_num = sb.partner_account, card_token = card_token,
           order_no = helpers.order_no("TOP"), amount = amount or "5.00", currency = "USD" }
end

--- A reader of the bodies a receiver nginx (spec/support/receiver.lua) got, in order:
-- next() returns the next one (waits up to 5 s).
function around.notifications(receiver)
  local http, socket = require "socket.http", require "socket"
  local received = 0
  return function()
    received = received + 1
    for _ = 1, 250 do
      local body = http.request(receiver.url .. "/got?n=" .. received)
      if body and body ~= "" then return body end
      socket.sleep(0.02)
    end
    error("no notification arrived")
  end
end

--- Luhn check of a string of digits.
function around.luhn_ok(pan)
  local sum, n = 0, #pan
  for i = n, 1, -1 do
    local d = tonumber(pan:sub(i, i))
    if (n - i) % 2 == 1 then
      d = d * 2
      if d > 9 then d = d - 9 end
    end
    sum = sum + d
  end
  return sum % 10 == 0
end

return around
