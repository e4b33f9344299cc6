-- luacheck: globals ngx
-- Issued cards (SPEC.md §11): the full details made when an order completes (a Luhn-valid
-- PAN on the order's BIN, CVV, ACS password, expiry), the same card behind the apply's
-- masked PAN, Query Card Information, balances, the limit set, Update Card Limit and Revoke
-- (final: a revoked card refuses every later change, its balance goes back to the partner
-- account, and the card-status notification goes out, notify_type 2).
-- The full PAN lives in the shared dict only; it is never logged, and the control API shows
-- it masked.
local json = require "pagsmile.issuing.json"
local state = require "pagsmile_emulator.state"
local webhooks = require "pagsmile_emulator.webhooks"

local M = {}

-- cardStatus: 3 is the docs' only value (an active card); the emulator's choice for a
-- revoked one is 6 (the dictionary is not published).
M.ACTIVE, M.REVOKED = 3, 6

-- A limit set when the apply gives none.
local DEFAULT_LIMIT = { daily_transactions = 10000, single_amount = "10000.00",
  daily_amount = "10000.00", monthly_amount = "10000.00" }

local function luhn_digit(digits)
  local sum = 0
  for i = #digits, 1, -1 do
    local d = tonumber(digits:sub(i, i))
    if (#digits - i) % 2 == 0 then
      d = d * 2
      if d > 9 then d = d - 9 end
    end
    sum = sum + d
  end
  return tostring((10 - sum % 10) % 10)
end

function M.mask(pan)
  return pan:sub(1, 6) .. "******" .. pan:sub(-4)
end

function M.load(card_token)
  return type(card_token) == "string" and state.get("card:" .. card_token) or nil
end

function M.save(card)
  state.set("card:" .. card.card_token, card)
end

--- A card for a completed order: its token and masked PAN go into the order.
function M.issue(order)
  local body = order.card_bin .. state.random_digits(9)
  local pan = body .. luhn_digit(body)
  local limit = order.card_limit or DEFAULT_LIMIT
  local card = {
    card_token = "tok_" .. state.random_hex(24), card_id = order.card_id, holder_id = order.holder_id,
    holder_name = order.holder_name, card_scheme = order.card_scheme, card_type = order.card_type,
    is_share_card = order.is_share_card, card_remark = order.card_remark,
    card_pan = pan, cvv = state.random_digits(3), acs_password = state.random_hex(8),
    expired_date = os.date("!%m/", ngx.time()) .. os.date("!%y", ngx.time() + 3 * 365 * 86400),
    active_time = state.stamp(), card_status = M.ACTIVE, virtual = order.card_type ~= 4,
    order_no = order.order_no,
    balances = { USD = state.cents(order.initial_balance or "0") },
    limit = {
      limit_id = state.next_id("limit_seq"), daily_transactions = limit.daily_transactions,
      single_amount = limit.single_amount, daily_amount = limit.daily_amount,
      monthly_amount = limit.monthly_amount, total_amount = limit.total_amount,
      create_time = state.stamp(),
    },
  }
  M.save(card)
  state.dict():set("limit:" .. card.limit.limit_id, card.card_token)
  order.card_token, order.card_pan = card.card_token, M.mask(pan)
end

local function not_found()
  return state.refuse("card-not-found", "card does not exist")
end

--- The card of `biz.card_token`, or nil and the refusal; `changing`: refused once revoked.
function M.usable(biz, changing)
  local card = M.load(biz.card_token)
  if not card then return nil, not_found() end
  if changing and card.card_status == M.REVOKED then
    return nil, state.refuse("card-revoked", "the card is revoked")
  end
  return card
end

-- The `masked_card_info` setting answers as the newest page does: masked PAN, no secrets.
function M.info(_, biz)
  local card, refused = M.usable(biz)
  if not card then return refused end
  local full = state.settings().masked_card_info ~= true
  return nil, {
    holder_id = json.long(card.holder_id), holder_name = card.holder_name,
    card_id = json.long(card.card_id), card_scheme = card.card_scheme,
    expired_date = card.expired_date, active_time = card.active_time, card_type = card.card_type,
    is_share_card = card.is_share_card, card_token = card.card_token,
    card_pan = full and card.card_pan or M.mask(card.card_pan),
    cvv = full and card.cvv or json.null, acs_password = full and card.acs_password or json.null,
    pin = json.null, card_status = card.card_status, card_remark = card.card_remark,
    virtual = card.virtual,
  }
end

function M.balance(_, biz)
  local card, refused = M.usable(biz)
  if not card then return refused end
  local list = {}
  for currency, cents in pairs(card.balances) do
    list[#list + 1] = { account_num = M.mask(card.card_pan), account_name = card.holder_name,
      currency = currency, balance = state.amount(cents), available_balance = state.amount(cents),
      block_amount = "0.00", card_token = card.card_token }
  end
  table.sort(list, function(a, b) return a.currency < b.currency end)
  return nil, list, #list
end

local function limit_answer(card)
  local l = card.limit
  return { limit_id = json.long(l.limit_id), card_token = card.card_token,
           daily_transactions = l.daily_transactions, single_amount = l.single_amount,
           daily_amount = l.daily_amount, monthly_amount = l.monthly_amount,
           total_amount = l.total_amount, create_time = l.create_time }
end

function M.query_limit(_, biz)
  local card
  if biz.card_token then
    card = M.load(biz.card_token)
  else
    local token = state.dict():get("limit:" .. state.long_string(biz.limit_id))
    card = token and M.load(token)
    if card and card.limit.limit_id ~= state.long_string(biz.limit_id) then card = nil end
  end
  if not card then return state.refuse("limit-not-found", "limit does not exist") end
  return nil, limit_answer(card)
end

function M.update_limit(_, biz)
  local card, refused = M.usable(biz, true)
  if not card then return refused end
  if card.limit.limit_id ~= state.long_string(biz.limit_id) then
    return state.refuse("limit-not-found", "limit does not exist for this card")
  end
  for _, k in ipairs { "daily_transactions", "single_amount", "daily_amount", "monthly_amount",
                       "total_amount" } do
    card.limit[k] = biz[k]
  end
  M.save(card)
  return nil, state.NO_DATA
end

-- Used amounts from the card's spending (money.lua records them), against its limit.
function M.remaining(_, biz, spent)
  local card, refused = M.usable(biz)
  if not card then return refused end
  local day = biz.stat_date or state.today()
  local used = spent(card, day)
  local l = card.limit
  local function left(limit, u) return limit and state.amount(state.cents(limit) - u) or json.null end
  return nil, {
    card_token = card.card_token, account_num = M.mask(card.card_pan),
    daily_used_transactions = used.day_count, daily_used_amount = state.amount(used.day),
    monthly_used_amount = state.amount(used.month), total_used_amount = state.amount(used.total),
    daily_remaining_transactions = (l.daily_transactions or 0) - used.day_count,
    daily_remaining_amount = left(l.daily_amount, used.day),
    monthly_remaining_amount = left(l.monthly_amount, used.month),
    total_remaining_limit = left(l.total_amount, used.total),
  }
end

-- Revoke: final; the balance goes back to the partner account (`refund(card, currency,
-- cents)`, money.lua); the card-status notification goes out.
function M.revoke(req, biz, refund)
  local card, refused = M.usable(biz, true)
  if not card then return refused end
  local before = card.card_status
  for currency, cents in pairs(card.balances) do
    if cents > 0 then refund(card, currency, cents) end
    card.balances[currency] = 0
  end
  card.card_status = M.REVOKED
  M.save(card)
  webhooks.notify(2, { card_token = card.card_token, card_pan = M.mask(card.card_pan),
                       pre_status = before, status = M.REVOKED, desc = "revoked" },
                  { card_token = card.card_token }, req.sub_partner_id)
  return nil, state.NO_DATA
end

--- The control view: every card, PAN masked, no CVV or ACS password.
function M.view()
  local out = {}
  for _, token in ipairs(state.names_under("card:")) do
    local c = M.load(token)
    local balances = {}
    for currency, cents in pairs(c.balances) do balances[currency] = state.amount(cents) end
    out[token] = { card_token = token, card_pan = M.mask(c.card_pan), card_status = c.card_status,
                   holder_id = c.holder_id, order_no = c.order_no, balances = balances,
                   limit = c.limit }
  end
  return out
end

return M
