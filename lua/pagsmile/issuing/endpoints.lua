-- The endpoints of SPEC.md as data (issue 11 item 1). The client has one call path for all
-- of them: adding an endpoint touches this table, its schema, the emulator's handler and a
-- spec, and nothing in the client's flow.
--   path     appended to base_url
--   schema   its biz_data table (schema.lua), registered here
--   kind     "read": repeated freely on failures a retry may fix; "write": keyed by `key`,
--            never repeated blindly once it may have reached the platform, its outcome then
--            settled through the `settle` endpoint (a read with the same key)
--   key      the biz_data field naming what the call is about: it goes into logs and errors,
--            and an answer must name the same value to count (issue 9: answers are bound)
--   result   function(data, request_id) -> what the call returns
local api = require "pagsmile.issuing.api"
local schema = require "pagsmile.issuing.schema"

local endpoints = {
  apply_card = {
    path = "/issuing/card/apply", schema = schema.apply_card, kind = "write", key = "order_no",
    settle = "query_apply_result", result = api.card,
  },
  query_apply_result = {
    path = "/issuing/card/query-apply-card-result", schema = schema.query_apply_result, kind = "read",
    key = "order_no", result = api.card,
  },
}

for name, ep in pairs(endpoints) do
  ep.name = name
  schema.register(ep.schema)
end
for _, ep in pairs(endpoints) do
  if ep.settle then ep.settle = assert(endpoints[ep.settle], ep.settle) end
end

return endpoints
