-- luacheck: globals ngx
-- Webhooks (SPEC.md §14): the registry (Create Webhook URL, Query Webhook URL) and the
-- notifications, each POSTed to every URL registered for its notify_type (and, for apply
-- results, to the `callback_url` setting), retried on a non-200 answer.
local sealing = require "pagsmile.issuing.envelope"
local json = require "pagsmile.issuing.json"
local state = require "pagsmile_emulator.state"

local M = {}

local CALLBACK_DELAYS = { 0.1, 0.2, 0.4 } -- the platform retries hours apart (SPEC.md §7)

local transport

local function record(entry)
  local n = state.dict():incr("cb_n", 1, 0)
  state.set("cb:" .. n, entry)
end

local deliver
-- `about`: the fields of the notification the stats list (order_no, card_token, holder_id).
deliver = function(premature, url, body, about, attempt)
  if premature then return end
  transport = transport or require("pagsmile.issuing.transport.ngx").new{
    user_agent = "pagsmile-sandbox-callback" }
  local res, err = transport:request{
    url = url, body = body, timeout = 5, connect_timeout = 2,
    headers = { ["Content-Type"] = "application/json; charset=UTF-8" },
  }
  local status = res and res.status or 0
  local entry = { url = url, status = status, attempt = attempt, error = err and err.kind or nil }
  for k, v in pairs(about) do entry[k] = v end
  record(entry)
  if status ~= 200 and CALLBACK_DELAYS[attempt] then
    ngx.timer.at(CALLBACK_DELAYS[attempt], deliver, url, body, about, attempt + 1)
  end
end

local function urls_of(notify_type)
  local urls = {}
  for _, id in ipairs(state.get("webhooks") or {}) do
    local w = state.get("webhook:" .. id)
    if w and w.webhook_type == notify_type then urls[#urls + 1] = w.webhook_url end
  end
  return urls
end

--- Sends notification `notify_type` with `biz` to its registered URLs (and `extra_url`).
-- `about` names it in the stats; `sub_partner_id` goes into the envelope.
function M.notify(notify_type, biz, about, sub_partner_id, extra_url)
  local urls = urls_of(notify_type)
  if type(extra_url) == "string" and extra_url ~= "" then table.insert(urls, 1, extra_url) end
  if not urls[1] then return end
  local note = {
    partner_id = state.cfg.partner_id, sub_partner_id = sub_partner_id or "",
    timestamp = state.stamp(8), version = "1.0", request_id = sealing.request_id(),
    notify_type = notify_type,
  }
  if state.settings().callback_plain == true then
    note.sign_type, note.biz_data = "", biz
  else
    note.sign_type = "RSA"
    note.random_key, note.biz_data = sealing.seal(state.merchant_key(), biz)
  end
  local body = assert(json.encode(note))
  about.notify_type = notify_type
  for _, url in ipairs(urls) do
    local ok, err = ngx.timer.at(0, deliver, url, body, about, 1)
    if not ok then ngx.log(ngx.ERR, "sandbox: cannot schedule a notification: ", err) end
  end
end

-- The endpoints ------------------------------------------------------------------------------

function M.create(_, biz)
  local id = state.dict():incr("webhook_seq", 1, 0)
  state.set("webhook:" .. id, {
    webhook_id = id, webhook_type = biz.webhook_type, webhook_url = biz.webhook_url,
    webhook_desc = biz.webhook_desc, create_time = state.stamp(),
  })
  state.append("webhooks", id)
  return nil, { webhook_id = id }
end

-- The owner is the partner (or the request's sub-partner): SPEC.md §14 lets either name it.
function M.query(req, biz)
  local owner = biz.sub_partner_id or biz.partner_id
  if owner ~= state.cfg.partner_id and (req.sub_partner_id == "" or owner ~= req.sub_partner_id) then
    return state.refuse("invalid-sub-partner-id", "sub_partner_id does not match")
  end
  local list = {}
  for _, id in ipairs(state.get("webhooks") or {}) do
    local w = state.get("webhook:" .. id)
    if w and (biz.webhook_type == nil or w.webhook_type == biz.webhook_type)
       and (biz.webhook_id == nil or tostring(w.webhook_id) == state.long_string(biz.webhook_id)) then
      list[#list + 1] = w
    end
  end
  return nil, list, #list
end

return M
