-- Money (SPEC.md §12, §13) against the local emulator over loopback: top-ups and balance
-- returns keyed by order_no, the transaction detail, an ambiguous top-up settled through it
-- and never sent again, and card_transactions walking every page of any date range.
local core = require "pagsmile.issuing.core"
local pager = require "pagsmile.issuing.pager"
local schema = require "pagsmile.issuing.schema"
local helpers = require "helpers"
local around = require "support.around"

local RECHARGE = "/issuing/card/recharge"
local PAGES = "/issuing/card/query-card-transactions"

describe("dates and windows of a list read", function()
  it("day numbers and dates are inverse, leap days included", function()
    assert.equal(0, schema.day_number("1970-01-01"))
    assert.equal("2024-02-29", pager.date_of(schema.day_number("2024-02-28") + 1))
    assert.equal("2023-03-01", pager.date_of(schema.day_number("2023-02-28") + 1))
    assert.equal("2100-03-01", pager.date_of(schema.day_number("2100-02-28") + 1))
    for d = schema.day_number("1999-12-01"), schema.day_number("2001-03-31") do
      assert.equal(d, schema.day_number(pager.date_of(d)))
    end
  end)

  it("cuts a range into windows of at most 31 days, both ends counted, every day once", function()
    assert.same({ { "2024-01-01", "2024-01-31" }, { "2024-02-01", "2024-03-02" },
                  { "2024-03-03", "2024-03-31" } }, pager.windows("2024-01-01", "2024-03-31", 31))
    assert.same({ { "2024-05-05", "2024-05-05" } }, pager.windows("2024-05-05", "2024-05-05", 31))
    assert.same({ { "2024-01-01", "2024-01-31" } }, pager.windows("2024-01-01", "2024-01-31", 31))
  end)
end)

describe("money", function()
  local sb, client

  lazy_setup(function() sb, client = helpers.start_client() end)
  lazy_teardown(function() helpers.stop_client(sb, client) end)
  before_each(function() assert(sb:settings { faults = false, money_duplicates = false }) end)

  local function ledger(order_no)
    return assert(sb:ledger()).orders[order_no] or { requests = 0, moves = 0 }
  end

  it("a top-up moves the amount to the card; its detail by order_no, type or id", function()
    local card = around.card(client, { initial_balance = "1.00" })
    local topup = around.topup(sb, card.card_token, "2.50")
    topup.reference = "march"
    local tx, err = client:recharge(topup)
    assert.is_nil(err)
    assert.matches("^%d+$", tx.transaction_id)
    assert.equal(topup.order_no, tx.order_no)
    assert.equal("3.50", assert(client:query_card_balance(card.card_token)).by_currency.USD.balance)
    local partner = assert(client:query_transaction { order_no = topup.order_no, transaction_type = 121 })
    assert.equal(tx.transaction_id, partner.transaction_id)
    assert.equal("-2.50", partner.bill_amount)
    assert.equal("march", partner.transaction_desc)
    local side = assert(client:query_transaction { order_no = topup.order_no, transaction_type = 120 })
    assert.equal("2.50", side.bill_amount)
    assert.equal(partner.related_transaction_id, side.transaction_id)
    local by_id = assert(client:query_transaction { transaction_id = side.transaction_id })
    assert.equal(side.transaction_id, by_id.transaction_id)
    assert.equal(tx.transaction_id, assert(client:query_transaction { order_no = topup.order_no }).transaction_id)
    local _, none = client:query_transaction { transaction_id = "1" }
    assert.equal("transaction-not-found", none.sub_code)
  end)

  it("a balance return moves it back; more than the balance is refused", function()
    local card = around.card(client, { initial_balance = "4.00" })
    local back = { payee_account_num = sb.partner_account, card_token = card.card_token,
                   order_no = helpers.order_no("RET"), amount = "1.25", currency = "USD" }
    local tx = assert(client:recharge_return(back))
    assert.equal(back.order_no, tx.order_no)
    assert.equal("2.75", assert(client:query_card_balance(card.card_token)).by_currency.USD.balance)
    back.order_no, back.amount = helpers.order_no("RET"), "9.00"
    local _, err = client:recharge_return(back)
    assert.equal("insufficient-balance", err.sub_code)
    assert.equal(0, ledger(back.order_no).moves)
  end)

  it("a repeated order_no is refused and points at query_transaction; one move", function()
    local card = around.card(client)
    local topup = around.topup(sb, card.card_token)
    assert(client:recharge(topup))
    local _, err = client:recharge(topup)
    assert.equal("api", err.kind)
    assert.equal("duplicate-order-no", err.sub_code)
    assert.matches("query_transaction", err.message, 1, true)
    assert.equal(topup.order_no, err.order_no)
    assert.equal(1, ledger(topup.order_no).moves)
  end)

  it("an ambiguous top-up is settled through the transaction detail, never sent twice", function()
    assert(sb:settings { money_duplicates = "move" }) -- a re-send would move it again
    local card = around.card(client)
    local topup = around.topup(sb, card.card_token, "3.00")
    assert(sb:faults { { kind = "reset_after", path = RECHARGE } })
    local tx, err = client:recharge(topup)
    assert.is_nil(err)
    assert.equal(ledger(topup.order_no).transactions[1], tx.transaction_id)
    assert.equal(-300, tonumber(tx.bill_amount) * 100)
    assert.same({ 1, 1 }, { ledger(topup.order_no).requests, ledger(topup.order_no).moves })
    assert.equal("3.00", assert(client:query_card_balance(card.card_token)).by_currency.USD.balance)
  end)

  it("a top-up the platform does not know after an ambiguous answer: unknown, not re-sent", function()
    assert(sb:settings { money_duplicates = "move" })
    local card = around.card(client)
    local topup = around.topup(sb, card.card_token)
    -- held up on its way: the query finds nothing yet; the original lands a second later
    assert(sb:faults { { kind = "late", ms = 1000, order_no = topup.order_no, path = RECHARGE } })
    local tx, err = client:recharge(topup)
    assert.is_nil(tx)
    assert.equal("unknown", err.outcome)
    assert.is_true(err.sent)
    assert.is_false(err.retryable)
    assert.equal(topup.order_no, err.order_no)
    assert.matches("outcome of the top-up is unknown", err.message, 1, true)
    assert.matches("not sent again automatically", err.message, 1, true)
    assert.matches('query_transaction{order_no = "' .. topup.order_no .. '", transaction_type = 121}',
      err.message, 1, true)
    core.sleep(1.3)
    assert.same({ 1, 1 }, { ledger(topup.order_no).requests, ledger(topup.order_no).moves })
  end)

  it("card_transactions walks every page of every 31-day window of a long range", function()
    local card = around.card(client)
    local today = os.date("!%Y-%m-%d")
    local start = pager.date_of(schema.day_number(today) - 70)
    assert(sb:spend(card.card_token, { count = 71, start_date = start, every_days = 1, amount = "1.10" }))
    local before = assert(sb:stats()).requests[PAGES] or 0
    local seen, dates, n = {}, {}, 0
    for tx, err in client:card_transactions { card_token = card.card_token, start_date = start,
                                              end_date = today } do
      assert(tx, err and tostring(err))
      assert.is_nil(seen[tx.transaction_id], "an entry came twice")
      seen[tx.transaction_id] = true
      n = n + 1
      dates[n] = tx.business_date
      assert.equal(card.card_token, tx.card_token)
    end
    assert.equal(71, n)
    assert.equal(start, dates[1])
    assert.equal(today, dates[71])
    -- windows of 31, 31 and 9 days: pages of 30 + 1, 30 + 1, 9 (the emulator refuses a
    -- range over 31 days or a page over 30, so every request was within the rules)
    assert.equal(before + 5, assert(sb:stats()).requests[PAGES])
    -- filters pass through
    local filtered = 0
    for tx in client:card_transactions { card_token = card.card_token, start_date = start,
                                         end_date = today, transaction_type = 120 } do
      assert(tx)
      filtered = filtered + 1
    end
    assert.equal(0, filtered)
  end)

  it("card_transactions: an invalid query is its first value, false and the error; nothing sent", function()
    local before = helpers.api_requests(sb)
    local it_ = client:card_transactions { start_date = "2024-02-01", end_date = "2024-01-31" }
    local first, err = it_()
    assert.is_false(first)
    assert.equal("validation", err.kind)
    assert.equal("end_date", err.field)
    assert.matches("must not be before start_date", err.reason, 1, true)
    assert.is_nil(it_())
    local _, e2 = client:card_transactions { start_date = "2024-01-01", end_date = "2024-01-31",
                                              page_num = 2 }()
    assert.equal("page_num", e2.field)
    assert.equal(before, helpers.api_requests(sb))
  end)
end)
