-- The issued card (SPEC.md §11, §14) against the local emulator over loopback: its details
-- (the full PAN, CVV and ACS password kept out of the table, printed masked), balances,
-- limits, revoke (final, notified), webhooks per type, the card-status notification, and
-- the writes that are repeated after a lost answer because repeating has the same effect.
local json = require "pagsmile.issuing.json"
local nginx = require "sandbox.nginx"
local helpers = require "helpers"
local around = require "support.around"

local RECEIVER = require("support.receiver").CONFIG -- POST /callback, GET /got?n=N
local REVOKE, UPDATE_LIMIT = "/issuing/card/revoke", "/issuing/card/update-limit"

describe("the issued card", function()
  local sb, client, receiver
  local notes -- the receiver's bodies, in order

  lazy_setup(function()
    receiver = nginx.start { name = "receiver", http = RECEIVER }
    notes = around.notifications(receiver)
    sb, client = helpers.start_client()
  end)
  lazy_teardown(function()
    helpers.stop_client(sb, client)
    if receiver then receiver.stop() end
  end)
  before_each(function() assert(sb:faults(nil)) end)

  local function next_notification() return notes() end

  it("card details: the full PAN behind the masked one, Luhn-valid, on the BIN asked for", function()
    local card = around.card(client, { card_bin = "658705", card_remark = "travel" })
    local info, err = client:query_card_info(card.card_token)
    assert.is_nil(err)
    local secret = info:reveal()
    assert.matches("^658705%d%d%d%d%d%d%d%d%d%d$", secret.card_pan)
    assert.is_true(around.luhn_ok(secret.card_pan))
    assert.equal(card.card_pan, secret.card_pan:sub(1, 6) .. "******" .. secret.card_pan:sub(-4))
    assert.matches("^%d%d%d$", secret.cvv)
    assert.is_string(secret.acs_password)
    assert.is_nil(secret.pin)
    assert.equal(card.card_pan, info.card_pan) -- masked in the table
    assert.matches("^%d%d/%d%d$", info.expired_date)
    assert.equal(3, info.card_status)
    assert.equal(card.holder_id, info.holder_id)
    assert.equal(card.card_id, info.card_id)
    assert.equal("travel", info.card_remark)
    -- nothing that prints, encodes or walks the table sees a secret
    for k, v in pairs(info) do
      assert.is_nil(({ cvv = 1, acs_password = 1, pin = 1 })[k], k)
      assert.is_nil(tostring(v):find(secret.card_pan, 1, true), k)
    end
    for _, text in ipairs { tostring(info), assert(json.encode(info)) } do
      assert.is_nil(text:find(secret.card_pan, 1, true))
      assert.is_nil(text:find(secret.acs_password, 1, true))
      assert.is_nil(text:find('"cvv"', 1, true))
    end
    assert.matches(card.card_pan, tostring(info), 1, true)
  end)

  it("card details as the newest page gives them: masked PAN, no secrets", function()
    local card = around.card(client)
    assert(sb:settings { masked_card_info = true })
    finally(function() assert(sb:settings { masked_card_info = false }) end)
    local info = assert(client:query_card_info(card.card_token))
    assert.equal(card.card_pan, info:reveal().card_pan)
    assert.is_nil(info:reveal().cvv)
  end)

  it("an unknown card_token is a refusal naming it", function()
    local _, err = client:query_card_info("tok_" .. ("0"):rep(24))
    assert.equal("card-not-found", err.sub_code)
    assert.equal("tok_" .. ("0"):rep(24), err.card_token)
  end)

  it("balances per currency; limits by card_token and limit_id; an absolute update", function()
    local card = around.card(client, { initial_balance = "12.34", card_limit = helpers.limits() })
    local bal = assert(client:query_card_balance(card.card_token))
    assert.equal("12.34", bal.by_currency.USD.balance)
    assert.equal("12.34", bal.by_currency.USD.available_balance)
    assert.equal(1, #bal.accounts)
    assert.equal(1, bal.total)
    local limit = assert(client:query_card_limit { card_token = card.card_token })
    assert.equal(20, limit.daily_transactions)
    assert.equal("1000.00", limit.daily_amount)
    assert.equal(limit.card_token, assert(client:query_card_limit { limit_id = limit.limit_id }).card_token)
    -- the docs' example sends daily_transactions as a string: taken, sent as an integer
    local done, err = client:update_card_limit { limit_id = limit.limit_id, card_token = card.card_token,
      daily_transactions = "50", single_amount = "100.00", daily_amount = "300.00",
      monthly_amount = "900.00" }
    assert.is_nil(err)
    assert.is_true(done.ok)
    assert.equal(card.card_token, done.card_token)
    local now = assert(client:query_card_limit { card_token = card.card_token })
    assert.equal(50, now.daily_transactions)
    assert.equal("300.00", now.daily_amount)
    -- spending today counts against it
    assert(sb:spend(card.card_token, { count = 2, amount = "5.00", every_days = 0 }))
    local left = assert(client:query_remaining_limit { card_token = card.card_token })
    assert.equal(2, left.daily_used_transactions)
    assert.equal("10.00", left.daily_used_amount)
    assert.equal(48, left.daily_remaining_transactions)
    assert.equal("290.00", left.daily_remaining_amount)
    local _, wrong = client:update_card_limit { limit_id = "1", card_token = card.card_token,
      daily_transactions = 1, single_amount = "1", daily_amount = "1", monthly_amount = "1" }
    assert.equal("limit-not-found", wrong.sub_code)
  end)

  it("revoke is final: notified (type 2), the balance goes back, later changes are refused", function()
    assert(client:create_webhook { webhook_type = 2, webhook_url = receiver.url .. "/callback",
                                   webhook_desc = "card status" })
    local card = around.card(client, { initial_balance = "7.00" })
    local before = assert(sb:ledger()).partner_balance
    local done, err = client:revoke_card(card.card_token)
    assert.is_nil(err)
    assert.is_true(done.ok)
    assert.equal(6, assert(client:query_card_info(card.card_token)).card_status)
    assert.equal("0.00", assert(client:query_card_balance(card.card_token)).by_currency.USD.balance)
    assert.equal(("%.2f"):format(tonumber(before) + 7), assert(sb:ledger()).partner_balance)
    local _, again = client:revoke_card(card.card_token)
    assert.equal("card-revoked", again.sub_code)
    local limit = assert(client:query_card_limit { card_token = card.card_token })
    local _, refused = client:update_card_limit { limit_id = limit.limit_id, card_token = card.card_token,
      daily_transactions = 1, single_amount = "1.00", daily_amount = "1.00", monthly_amount = "1.00" }
    assert.equal("card-revoked", refused.sub_code)
    -- the card-status notification, told apart from an apply result by notify_type
    local raw = next_notification()
    assert.is_nil(raw:find(card.card_token, 1, true), "it travels sealed")
    local note = assert(client:parse_notification(raw))
    assert.equal("card_status", note.event)
    assert.equal(2, note.notify_type)
    assert.equal(card.card_token, note.card_token)
    assert.equal(card.card_pan, note.card_pan)
    assert.equal(3, note.pre_status)
    assert.equal(6, note.status)
    assert.is_false(note.confirmed)
    local confirmed = assert(client:confirm_notification(raw))
    assert.is_true(confirmed.confirmed)
    assert.is_nil(confirmed.mismatch)
    assert.equal(6, confirmed.card_status)
    -- a notification claiming another status is contradicted by the platform
    local forged = json.encode { partner_id = sb.partner_id, notify_type = 2, sign_type = "",
      biz_data = { card_token = card.card_token, pre_status = 6, status = 3 } }
    assert.same({ "status" }, assert(client:confirm_notification(forged)).mismatch)
  end)

  it("webhooks per type: listed, filtered, and the type-1 ones get apply results", function()
    local mine = assert(client:create_webhook { webhook_type = 1,
      webhook_url = receiver.url .. "/callback", webhook_desc = "applies" })
    assert.matches("^%d+$", mine.webhook_id)
    local all = assert(client:query_webhooks())
    assert.is_true(#all.webhooks >= 2)
    assert.equal(#all.webhooks, all.total)
    local ones = assert(client:query_webhooks { webhook_type = 1 })
    for _, w in ipairs(ones.webhooks) do assert.equal(1, w.webhook_type) end
    local found = false
    for _, w in ipairs(ones.webhooks) do found = found or w.webhook_id == mine.webhook_id end
    assert.is_true(found)
    local card = around.card(client)
    local note = assert(client:parse_notification(next_notification()))
    assert.equal("apply_card", note.event)
    assert.equal(card.order_no, note.order_no)
    assert.equal("completed", note.status)
  end)

  it("a revoke whose answer was lost is repeated, and 'card revoked' then means done", function()
    local card = around.card(client)
    local before = assert(sb:stats()).requests[REVOKE] or 0
    assert(sb:faults { { kind = "reset_after", path = REVOKE } })
    local done, err = client:revoke_card(card.card_token)
    assert.is_nil(err)
    assert.is_true(done.ok)
    assert.equal(card.card_token, done.card_token)
    -- the first was processed and its answer lost; the second was refused as done
    assert.equal(before + 2, assert(sb:stats()).requests[REVOKE])
    assert.equal(6, assert(client:query_card_info(card.card_token)).card_status)
  end)

  it("a limit update that keeps failing after being sent: outcome unknown, safe to repeat", function()
    local card = around.card(client)
    local limit = assert(client:query_card_limit { card_token = card.card_token })
    assert(sb:faults { { kind = "reset_after", path = UPDATE_LIMIT, times = 100 } })
    local _, err = client:update_card_limit { limit_id = limit.limit_id, card_token = card.card_token,
      daily_transactions = 7, single_amount = "7.00", daily_amount = "7.00", monthly_amount = "7.00" }
    assert.equal("transport", err.kind)
    assert.equal("unknown", err.outcome)
    assert.is_true(err.sent)
    assert.is_true(err.retryable)
    assert.equal(card.card_token, err.card_token)
    assert.matches("same call again is safe", err.message, 1, true)
    assert(sb:faults(nil))
    assert.equal(7, assert(client:query_card_limit { card_token = card.card_token }).daily_transactions)
  end)
end)
