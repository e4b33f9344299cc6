-- The facts of the Pagsmile Issuing Card API that the client relies on, in one place
-- (SPEC.md). Where the public documentation is silent, the value here is the project's
-- choice; change it here when the live service says otherwise.
local api = {}

api.SANDBOX_URL = "https://card-api-sandbox.pagsmile.com"

api.PATH = {
  apply_card = "/issuing/card/apply",
  query_apply_result = "/issuing/card/query-apply-card-result",
}

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

-- §8 OrderStatus: only 3 and 5 appear in the docs' examples.
api.ORDER_STATUS = { [3] = "processing", [5] = "completed" }

-- §5 "long" fields of the answers (Java int64): decoded exactly by the core.
api.LONG_FIELDS = { "card_id", "holder_id" }

-- The card table of DESIGN.md: every field of the answer, plus status, completed and the
-- request_id of the call that produced it.
function api.card(data, request_id)
  local card = {}
  for k, v in pairs(data) do card[k] = v end
  local n = tonumber(card.order_status)
  card.status = api.ORDER_STATUS[n] or "unknown"
  card.completed = card.status == "completed"
  card.request_id = request_id
  return card
end

return api
