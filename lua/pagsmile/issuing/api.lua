-- The facts of the Pagsmile Issuing Card API that the client relies on, in one place
-- (SPEC.md). Where the public documentation is silent, the value here is the project's
-- choice; change it here when the live service says otherwise.
local json = require "pagsmile.issuing.json"

local api = {}

local type, pairs, ipairs, tonumber = type, pairs, ipairs, tonumber

api.SANDBOX_URL = "https://card-api-sandbox.pagsmile.com"

-- The endpoints' paths are in endpoints.lua, with the rest of each endpoint.

-- §1: the docs misspell "chartset"; the correct word is sent.
api.CONTENT_TYPE = "application/json; charset=UTF-8"

-- §2 envelope constants and defaults.
api.FORMAT = "JSON"
api.SIGN_TYPE = "RSA"
api.DEFAULT_VERSION = "2.0"      -- current endpoint examples; the security page shows "1.0"
api.DEFAULT_UTC_OFFSET = "+08:00" -- the docs' examples were stamped in UTC+8

-- §4 response codes.
api.SUCCESS = "10000"
api.SERVICE_UNAVAILABLE = "20000"

-- The sub_codes that mean "this order_no is unknown" and "this order_no is taken". Not
-- published: these are the local sandbox's words. A definite "not found" is the only answer
-- that lets the client apply again after an ambiguous attempt.
api.ORDER_NOT_FOUND = { ["order-not-found"] = true }
api.ORDER_DUPLICATE = { ["duplicate-order-no"] = true }

-- The same for the calls around the apply (issue 13). Unpublished too: the local emulator's
-- words, one place to correct them.
api.HOLDER_NOT_FOUND = { ["holder-not-found"] = true }
api.HOLDER_DUPLICATE = { ["holder-exists"] = true }            -- (id_no, id_type) taken
api.TRANSACTION_NOT_FOUND = { ["transaction-not-found"] = true }
api.WEBHOOK_NOT_FOUND = {}                                      -- a list: no match is not found
api.CARD_REVOKED = { ["card-revoked"] = true }                  -- a revoke that was done already

-- Settling an ambiguous top-up or balance return (SPEC.md §12): the transaction detail by
-- order_no. The newest page wants transaction_type with it; a top-up's own answer names its
-- partner-account side, type 121 (the docs' example). A return's types are not published:
-- it is asked by order_no alone, as the older pages allow. (A platform that refuses that
-- leaves the return's outcome "unknown": never a second return.)
api.SETTLE_TRANSACTION_TYPE = { recharge = 121, recharge_return = nil }

-- SPEC.md §10, documents: the current page's formats (the older page listed two dozen image
-- formats), and "Max size: 2M", read as 2 MiB of the file itself (before Base64).
api.DOCUMENT_EXTENSIONS = { "pdf", "jpg", "jpeg", "png", "doc", "docx" }
api.DOCUMENT_MAX_BYTES = 2 * 1024 * 1024
local DOCUMENT_EXTENSION = {}
for _, e in ipairs(api.DOCUMENT_EXTENSIONS) do DOCUMENT_EXTENSION[e] = true end

--- Whether a file name ends in an extension the platform takes (any case).
function api.document_extension_ok(name)
  local ext = name:match("%.([%w]+)$")
  return ext ~= nil and DOCUMENT_EXTENSION[ext:lower()] == true
end

-- fileType (SPEC.md §8, §10): the dictionary is not published; 1 is the docs' example and "ID
-- and address are required". Project choice: 1 ID document, 2 proof of address.
api.FILE_TYPE = { id_document = 1, proof_of_address = 2 }

-- CustomerAuditStatus (SPEC.md §8): not published. The docs show 3 on a new holder, 4 → 2
-- in a rejection. Project choice: 3 pending, 4 under review, 2 rejected, 1 approved.
api.AUDIT_STATUS = { [1] = "approved", [2] = "rejected", [3] = "pending", [4] = "reviewing" }

-- Lists (SPEC.md §13): pages of at most 30; a date range of at most 31 days, counted with
-- both ends (the docs say "max query time range: 31 days").
api.MAX_PAGE_SIZE = 30
api.MAX_RANGE_DAYS = 31

-- What a refusal points at (issue 10 item 7), by sub_code: the setting to check, if any, and
-- a hint for the error's message. These are the local sandbox's sub_codes (the platform's
-- catalogue is not published, SPEC.md §4): correct them here when the live platform answers
-- otherwise. Hints quote nothing of the platform's msg/sub_msg, which may echo what was sent.
-- Keys are compared lower-case with "_" read as "-".
api.REFUSALS = {
  ["invalid-app-id"] = { "app_id", "the platform does not know this app_id: check app_id" },
  ["invalid-partner-id"] = { "partner_id",
    "the platform does not know this partner_id for this app_id: check partner_id" },
  ["invalid-sub-partner-id"] = { "sub_partner_id", "check sub_partner_id" },
  ["invalid-signature"] = { "platform_public_key", "the platform could not decrypt the "
    .. "request: check platform_public_key (the platform's key for this app_id) and app_id" },
  ["invalid-version"] = { "version", 'check version ("2.0" or "1.0")' },
  ["invalid-timestamp"] = { "utc_offset",
    "the platform refused the request's time: check utc_offset and this machine's clock" },
  ["duplicate-request-id"] = { nil, "a request_id was sent twice; the next call makes a new one" },
  ["invalid-parameter"] = { nil, "a biz_data field broke a rule of the platform's; "
    .. "err.sub_msg may say which" },
  ["order-not-found"] = { nil, "the platform has no order with this order_no" },
  ["holder-not-found"] = { nil, "the platform has no cardholder with this holder_id (or "
    .. "id_no and id_type)" },
  ["holder-exists"] = { nil, "a cardholder with this id_no and id_type exists: "
    .. "query_holder{id_no, id_type} returns it" },
  ["card-not-found"] = { nil, "the platform has no card with this card_token" },
  ["card-revoked"] = { nil, "the card is revoked: it takes no further changes" },
  ["transaction-not-found"] = { nil, "the platform has no such transaction" },
  ["insufficient-balance"] = { nil, "the paying account's balance is too low" },
  ["holder-not-approved"] = { nil, "the cardholder's review is not approved yet: "
    .. "query_holder shows its audit" },
  ["invalid-account"] = { nil, "the account number is not your issuing account" },
  ["limit-not-found"] = { nil, "no such limit_id for this card: query_card_limit{card_token} "
    .. "gives it" },
  ["file-too-large"] = { nil, "the document is larger than the platform takes (2 MiB)" },
}

-- By code, when the sub_code has no entry.
api.CODE_HINTS = {
  [api.SERVICE_UNAVAILABLE] = "the platform is unavailable for now; try again later",
}

--- The setting a refusal points at (or nil) and a hint for its message (or nil).
function api.refusal(code, sub_code)
  if type(sub_code) == "string" and #sub_code <= 64 then
    local r = api.REFUSALS[(sub_code:lower():gsub("_", "-"))]
    if r then return r[1], r[2] end
  end
  return nil, type(code) == "string" and api.CODE_HINTS[code] or nil
end

-- §8 OrderStatus: only 3 and 5 appear in the docs' examples.
api.ORDER_STATUS = { [3] = "processing", [5] = "completed" }

-- §5 "long" fields of the answers (Java int64): decoded exactly by the core.
api.LONG_FIELDS = { "card_id", "holder_id" }

-- Notifications (SPEC.md §7, §14), by notify_type: the event's name, the fields a
-- notification may claim, and the read that confirms them (`confirm`: endpoint name, the
-- field it is asked by, and for each claim the field of the platform's answer that holds the
-- truth). notify_type 2 as the card-status notification is an inference (the docs' webhook
-- list names type-2 URLs ".../card_action_result_notification"); change it here.
api.NOTIFICATIONS = {
  [1] = { event = "apply_card", confirm = "query_apply_result", by = "order_no",
          claims = { order_no = "order_no", order_status = "order_status", card_token = "card_token",
                     card_pan = "card_pan", card_id = "card_id", holder_id = "holder_id" } },
  [2] = { event = "card_status", confirm = "query_card_info", by = "card_token",
          claims = { card_token = "card_token", status = "card_status" } },
  [3] = { event = "holder_audit", confirm = "query_holder", by = "holder_id",
          claims = { holder_id = "holder_id", status = "audit_status" } },
}

-- One type for a long id on every runtime: its decimal digits as a string. A string prints
-- as itself, survives lua-cjson (which writes every number with 14 significant digits, on
-- 5.3+ too: 9007199254740993 would come out as 9.007199254741e+15, another card), and
-- compares the same on 5.1, 5.3, 5.4 and LuaJIT. Pass it back as is: the schema takes
-- decimal strings for long ids.
local function long_id(v)
  if type(v) == "number" then
    -- The core decodes integers up to 2^53 as exact doubles on 5.1/LuaJIT, and beyond as
    -- strings; json.long takes exactly the integral numbers, and its tostring is the one
    -- int64 formatter there is (src/json.c).
    local l = json.long(v)
    if l then return tostring(l) end
  end
  return v -- a string already, or not an integer: the platform's value, untouched
end

api.long_id = long_id

--- A value as text for comparing what was asked with what came back: strings as they are,
-- integral numbers and longs as their digits ("1" and 1 are the same id_type; the docs'
-- examples send ids both ways). nil for anything else.
function api.key_text(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" or t == "userdata" or t == "cdata" then
    local l = json.long(v)
    if l then return tostring(l) end
  end
  return nil
end

-- The card table of DESIGN.md: every field of the answer, plus status, completed and the
-- request_id of the call that produced it. Long ids have the runtime's one type (long_id).
function api.card(data, request_id)
  local card = {}
  for k, v in pairs(data) do card[k] = v end
  for _, k in ipairs(api.LONG_FIELDS) do
    if card[k] ~= nil then card[k] = long_id(card[k]) end
  end
  local n = tonumber(card.order_status)
  card.status = api.ORDER_STATUS[n] or "unknown"
  card.completed = card.status == "completed"
  card.request_id = request_id
  return card
end

return api
