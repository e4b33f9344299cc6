-- luacheck: globals ngx
-- Money (SPEC.md §12): the partner account, top-ups and balance returns keyed by order_no,
-- the ledger of transactions, Query Transaction Detail and Query Card Transactions.
-- A top-up moves the amount from the partner account to the card and records two
-- transactions (the docs' example): type 121 on the partner account (its id is the answer)
-- and 120 on the card. A return records 123 and 122 (the emulator's choice: the docs show
-- no return's types). A repeated order_no is refused (`duplicate-order-no`), unless the
-- `money_duplicates` setting is "move": then it moves again, as the worst undocumented
-- platform would, so that a client that re-sends shows in the ledger.
local json = require "pagsmile.issuing.json"
local pager = require "pagsmile.issuing.pager"
local schema = require "pagsmile.issuing.schema"
local state = require "pagsmile_emulator.state"
local cards = require "pagsmile_emulator.cards"

local M = {}

M.PARTNER_ACCOUNT = "104190000004" -- the docs' example
local PARTNER_START = state.cents("100000000.00")

local TOPUP = { partner = 121, card = 120 }
local RETURN = { partner = 123, card = 122 }
local SPEND = 151 -- a card authorisation (the docs' auth notification)

local function partner_balance()
  local d = state.dict()
  local b = d:get("partner_balance")
  if not b then
    d:set("partner_balance", PARTNER_START)
    b = PARTNER_START
  end
  return b
end

local function next_tx_id()
  return string.format("%d", 100000000000 + state.dict():incr("tx_seq", 1, 76794))
end

-- One transaction record; `card` the card it concerns (nil for none).
local function record(fields)
  local tx = {
    transaction_id = next_tx_id(), transaction_status = 1, bill_fee = "0.00",
    exchange_rate = "1.0000", business_date = state.today(), create_time = state.stamp(),
  }
  for k, v in pairs(fields) do tx[k] = v end
  tx.transaction_amount, tx.transaction_currency = tx.bill_amount, tx.bill_currency
  state.set("tx:" .. tx.transaction_id, tx)
  if tx.on_card then
    state.append("cardtx:" .. tx.card_token, tx.transaction_id)
    state.append("cardtx", tx.transaction_id)
  end
  return tx
end

-- The two sides of a move of `cents` in `currency` between the partner account and `card`
-- (positive: to the card).
local function move(card, kind, order_no, cents, currency, reference)
  local d = state.dict()
  local partner = partner_balance() - cents
  d:set("partner_balance", partner)
  card.balances[currency] = (card.balances[currency] or 0) + cents
  cards.save(card)
  local common = { order_no = order_no, card_token = card.card_token, bill_currency = currency,
                   transaction_desc = reference, reference = json.null }
  local p = { transaction_type = kind.partner, account_num = "104190******0004",
              account_name = "Sandbox Partner", bill_amount = state.amount(-cents),
              balance_change = state.amount(-cents), balance = state.amount(partner) }
  local c = { transaction_type = kind.card, account_num = cards.mask(card.card_pan),
              account_name = card.holder_name, bill_amount = state.amount(cents),
              balance_change = state.amount(cents), balance = state.amount(card.balances[currency]),
              on_card = true }
  for k, v in pairs(common) do p[k], c[k] = v, v end
  local ptx = record(p)
  c.related_transaction_id = ptx.transaction_id
  local ctx = record(c)
  ptx.related_transaction_id = ctx.transaction_id
  state.set("tx:" .. ptx.transaction_id, ptx)
  if order_no then
    state.append("txo:" .. order_no, ptx.transaction_id)
    state.append("txo:" .. order_no, ctx.transaction_id)
    d:incr("moves:" .. order_no, 1, 0)
  end
  return ptx
end

-- recharge and recharge_return: `account` the field naming the partner account, `sign` +1
-- to the card, -1 from it.
local function transfer(account, kind, sign)
  return function(_, biz)
    local d = state.dict()
    local order_no = biz.order_no
    d:incr("money_requests:" .. order_no, 1, 0)
    if d:get("moves:" .. order_no) and state.settings().money_duplicates ~= "move" then
      return state.refuse("duplicate-order-no", "order_no already exists")
    end
    local card, refused = cards.usable(biz, true)
    if not card then return refused end
    if biz[account] ~= M.PARTNER_ACCOUNT then
      return state.refuse("invalid-account", account .. " is not the partner's account")
    end
    local cents = state.cents(biz.amount)
    local from = sign > 0 and partner_balance() or (card.balances[biz.currency] or 0)
    if cents <= 0 or cents > from then
      return state.refuse("insufficient-balance", "the balance is too low")
    end
    local tx = move(card, kind, order_no, sign * cents, biz.currency, biz.reference)
    return nil, { transaction_id = tx.transaction_id }
  end
end

M.recharge = transfer("pay_account_num", TOPUP, 1)
M.recharge_return = transfer("payee_account_num", RETURN, -1)

--- A revoked card's balance back to the partner account (no order_no: SPEC.md §11).
function M.refund(card, currency, cents)
  move(card, RETURN, nil, -cents, currency, "revoke")
end

local function public(tx)
  local out = {}
  for k, v in pairs(tx) do if k ~= "on_card" then out[k] = v end end
  out.transaction_type = tx.transaction_type
  return out
end

-- By transaction_id; or by order_no and transaction_type; or by order_no alone (the older
-- pages): the partner-account side, the one the write's answer named.
function M.query_transaction(_, biz)
  local tx
  if biz.transaction_id then
    tx = state.get("tx:" .. biz.transaction_id)
  else
    for _, id in ipairs(state.get("txo:" .. biz.order_no) or {}) do
      local t = state.get("tx:" .. id)
      if biz.transaction_type == nil or t.transaction_type == biz.transaction_type then
        tx = t
        break
      end
    end
  end
  if not tx then return state.refuse("transaction-not-found", "transaction does not exist") end
  return nil, public(tx)
end

-- The card's transactions (of one card, or of every card), filtered, oldest first, a page.
function M.query_card_transactions(_, biz)
  local ids = state.get(biz.card_token and ("cardtx:" .. biz.card_token) or "cardtx") or {}
  local matched = {}
  for _, id in ipairs(ids) do
    local tx = state.get("tx:" .. id)
    if tx and tx.business_date >= biz.start_date and tx.business_date <= biz.end_date
       and (biz.order_no == nil or tx.order_no == biz.order_no)
       and (biz.transaction_type == nil or tx.transaction_type == biz.transaction_type)
       and (biz.transaction_status == nil or tx.transaction_status == biz.transaction_status)
       and (biz.currency == nil or tx.bill_currency == biz.currency) then
      matched[#matched + 1] = tx
    end
  end
  local size, num = biz.page_size or 10, biz.page_num or 1
  local page = {}
  for i = (num - 1) * size + 1, math.min(num * size, #matched) do
    page[#page + 1] = public(matched[i])
  end
  return nil, page, #matched
end

--- Spending of a card (type 151) on `day` and its month, and in all: for the remaining limit.
function M.spent(card, day)
  local used = { day = 0, day_count = 0, month = 0, total = 0 }
  for _, id in ipairs(state.get("cardtx:" .. card.card_token) or {}) do
    local tx = state.get("tx:" .. id)
    if tx.transaction_type == SPEND then
      local cents = -state.cents(tx.bill_amount)
      used.total = used.total + cents
      if tx.business_date:sub(1, 7) == day:sub(1, 7) then used.month = used.month + cents end
      if tx.business_date == day then
        used.day, used.day_count = used.day + cents, used.day_count + 1
      end
    end
  end
  return used
end

--- Control API: `count` spendings of `amount` on a card, one every `every_days` days from
-- `start_date` (yyyy-MM-dd), as authorisations the card made (the balance is not touched).
function M.seed(card_token, input)
  local card = cards.load(card_token)
  if not card then return nil, "no such card" end
  local count, every = tonumber(input.count) or 1, tonumber(input.every_days) or 1
  local first = schema.day_number(input.start_date or state.today())
  for i = 0, count - 1 do
    record { card_token = card_token, transaction_type = SPEND,
      account_num = cards.mask(card.card_pan), account_name = card.holder_name,
      bill_amount = state.amount(-state.cents(input.amount or "1.00")),
      bill_currency = input.currency or "USD", balance_change = "0.00",
      balance = state.amount(card.balances.USD or 0), transaction_desc = "seeded",
      business_date = pager.date_of(first + i * every), on_card = true }
  end
  return count
end

--- The control view: per order_no, the requests that reached processing and the moves made;
-- the partner account's balance.
function M.ledger()
  local d = state.dict()
  local orders = {}
  for _, order_no in ipairs(state.names_under("money_requests:")) do
    orders[order_no] = { requests = d:get("money_requests:" .. order_no),
                         moves = d:get("moves:" .. order_no) or 0,
                         transactions = state.get("txo:" .. order_no) or {} }
  end
  return { orders = orders, partner_account = M.PARTNER_ACCOUNT,
           partner_balance = state.amount(partner_balance()) }
end

return M
