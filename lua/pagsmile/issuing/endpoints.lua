-- The endpoints of SPEC.md as data (issue 11 item 1). The client has one call path for all
-- of them: adding an endpoint touches this table, its schema, the emulator's handler and a
-- spec, and nothing in the client's flow.
--   path     appended to base_url
--   schema   its biz_data table (schema.lua) as the caller gives it, registered here; `wire`
--            the table as it travels when `transform` makes it from the caller's (the
--            emulator checks that one)
--   transform  function(clean, settings) -> the biz_data sent | nil, field, reason
--   kind     "read": repeated freely on failures a retry may fix; "write": never repeated
--            blindly once it may have reached the platform, its outcome then settled
--            through the `settle` endpoint; "repeat": a write whose repetition has the same
--            effect (absolute values, a final state), retried like a read
--   key      the biz_data field naming what the call is about, safe to log (never personal
--            data): it goes into logs and errors
--   answer   "object" (default), "list" (data is an array), "none" (code and msg only)
--   bind     fields of the request an object answer must carry with the same value (issue 9:
--            answers are bound); default { key }. `echo`: fields that, when an answer (or a
--            list entry) carries them, must match. `expect`: fields an object answer must carry
--   result   function(data, request_id, biz, envelope) -> what the call returns
-- A write's settling (kind "write"):
--   settle      the read that tells the outcome; `settle_biz(clean)` its biz_data (default
--               { [key] = clean[key] }); `settled(result, clean)` the write's result from
--               the read's (nil: not there), default the read's result itself
--   not_found   on a read: the sub_codes that say "no such thing" for certain
--   duplicate   the sub_codes that refuse a write as done before (its key is taken)
--   resend      after a definite "not found", may the write be sent again? Never for money:
--               what a duplicate order_no does there is undocumented (issue 13)
--   noun        the write in messages ("apply"), `again` its repetition ("applying
--               again"); `advice(key)` how the caller learns the outcome; `taken` what a
--               duplicate on a first attempt means; `label` a read's name in messages
--   already     on a "repeat": the sub_codes that, after an attempt that may have been
--               processed, mean it was (a revoke answered "card revoked")
local api = require "pagsmile.issuing.api"
local document = require "pagsmile.issuing.document"
local results = require "pagsmile.issuing.results"
local schema = require "pagsmile.issuing.schema"

local function read(path, key, result, more)
  local ep = { path = path, kind = "read", key = key, result = result }
  for k, v in pairs(more or {}) do ep[k] = v end
  return ep
end

local function money(path, noun, settle_type)
  return {
    path = path, kind = "write", key = "order_no", bind = {}, echo = { "order_no", "card_token" },
    expect = { "transaction_id" }, result = results.transaction,
    settle = "query_transaction", resend = false, duplicate = api.ORDER_DUPLICATE, noun = noun,
    settle_biz = function(clean)
      return { order_no = clean.order_no, transaction_type = settle_type }
    end,
    advice = function(order_no)
      return "it is not sent again automatically (what the platform does with a repeated "
        .. "order_no is undocumented): check query_transaction{order_no = \"" .. tostring(order_no)
        .. "\"" .. (settle_type and (", transaction_type = " .. settle_type) or "")
        .. "} before sending it again"
    end,
    taken = " (order_no is taken: query_transaction{order_no = ...} shows what it moved)",
  }
end

local endpoints = {
  apply_card = {
    path = "/issuing/card/apply", kind = "write", key = "order_no", result = api.card,
    answer_noun = "card", settle = "query_apply_result", resend = true,
    duplicate = api.ORDER_DUPLICATE, noun = "apply", again = "applying again",
    advice = function(order_no)
      return "query order_no " .. tostring(order_no) .. " later; applying again with it cannot "
        .. "issue a second card"
    end,
    taken = " (order_no is taken: query_apply_result(order_no) returns the card it issued)",
  },
  query_apply_result = read("/issuing/card/query-apply-card-result", "order_no", api.card,
    { answer_noun = "card", not_found = api.ORDER_NOT_FOUND, label = "Query Apply Result" }),

  -- Cardholders (SPEC.md §9, §10)
  create_holder = {
    path = "/issuing/holder/create", kind = "write", bind = { "id_no", "id_type" },
    expect = { "holder_id" }, result = results.holder,
    settle = "query_holder", resend = true, duplicate = api.HOLDER_DUPLICATE,
    noun = "cardholder creation",
    settle_biz = function(clean) return { id_no = clean.id_no, id_type = clean.id_type } end,
    advice = function()
      return "query_holder{id_no = ..., id_type = ...} says whether it was created; creating "
        .. "it again before that may make a second cardholder"
    end,
    taken = " (query_holder{id_no = ..., id_type = ...} returns the cardholder)",
  },
  query_holder = read("/issuing/holder/query", "holder_id", results.holder,
    { bind = { "holder_id", "id_no", "id_type" }, not_found = api.HOLDER_NOT_FOUND }),
  update_holder = { path = "/issuing/holder/update", kind = "repeat", key = "holder_id",
    result = results.holder, noun = "cardholder update" },
  upload_holder_document = {
    path = "/issuing/holder/upload-document", kind = "repeat", key = "holder_id",
    answer = "none", wire = schema.upload_holder_document_wire, result = results.done,
    transform = document.wire, noun = "document upload",
  },

  -- The card (SPEC.md §11)
  query_card_info = read("/issuing/card/query-card-info", "card_token", results.card_info),
  query_card_balance = read("/issuing/card/query-card-balance", "card_token", results.balances,
    { answer = "list", echo = { "card_token" } }),
  query_remaining_limit = read("/issuing/card/query-remaining-limit", "card_token",
    results.remaining_limit),
  query_card_limit = read("/issuing/card/query-limit", "card_token", results.object,
    { bind = { "limit_id", "card_token" } }),
  update_card_limit = { path = "/issuing/card/update-limit", kind = "repeat", key = "card_token",
    answer = "none", result = results.done, noun = "limit update" },
  revoke_card = { path = "/issuing/card/revoke", kind = "repeat", key = "card_token",
    answer = "none", result = results.done, already = api.CARD_REVOKED, noun = "revoke" },

  -- Webhooks (SPEC.md §14)
  create_webhook = {
    path = "/issuing/webhook/create", kind = "write", expect = { "webhook_id" },
    result = results.object, settle = "query_webhooks", resend = true, duplicate = {},
    noun = "webhook creation",
    settle_biz = function(clean) return { webhook_type = clean.webhook_type } end,
    settled = function(list, clean)
      for _, w in ipairs(list.webhooks) do
        if w.webhook_url == clean.webhook_url then return results.object(w, list.request_id) end
      end
    end,
    advice = function()
      return "query_webhooks{webhook_type = ...} lists it if it was made"
    end,
  },
  query_webhooks = read("/issuing/webhook/query-webhook-list", nil, results.list("webhooks"), {
    answer = "list", echo = { "webhook_id", "webhook_type" }, wire = schema.query_webhooks_wire,
    -- SPEC.md §14: "if sub_partner_id is empty, please input the value of partner_id"
    transform = function(clean, settings)
      local owner = settings.sub_partner_id
      if owner == nil or owner == "" then owner = settings.partner_id end
      local biz = { sub_partner_id = owner }
      for k, v in pairs(clean) do biz[k] = v end
      return biz
    end,
  }),

  -- Money (SPEC.md §12)
  recharge = money("/issuing/card/recharge", "top-up", api.SETTLE_TRANSACTION_TYPE.recharge),
  recharge_return = money("/issuing/card/recharge-return", "balance return",
    api.SETTLE_TRANSACTION_TYPE.recharge_return),
  query_transaction = read("/issuing/card/query-card-transaction-detail", "order_no",
    results.transaction, { bind = { "order_no", "transaction_id", "transaction_type" },
    not_found = api.TRANSACTION_NOT_FOUND }),
  query_card_transactions = read("/issuing/card/query-card-transactions", "card_token",
    results.list("transactions"), { answer = "list", echo = { "card_token", "order_no" } }),
}

for name, ep in pairs(endpoints) do
  ep.name = name
  ep.schema = ep.schema or schema[name]
  schema.register(ep.schema)
  if ep.wire then schema.register(ep.wire) end
  ep.answer = ep.answer or "object"
  ep.bind = ep.bind or { ep.key }
  ep.not_found, ep.duplicate = ep.not_found or {}, ep.duplicate or {}
end
for _, ep in pairs(endpoints) do
  if ep.settle then
    ep.settle = assert(endpoints[ep.settle], ep.settle)
    if not ep.settle_biz then
      local key = ep.key
      ep.settle_biz = function(clean) return { [key] = clean[key] } end
    end
  end
end

return endpoints
