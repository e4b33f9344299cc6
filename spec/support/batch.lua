-- luacheck: globals ngx
-- apply_cards as spec 54 drives it, on either engine: in the busted process (libcurl multi)
-- and inside nginx (light threads over cosockets, through handler() below). Both return the
-- same summary, so the spec's checks are written once.
--   summary = { results = { [i] = { card = {order_no, card_token, status} } | { err = {...} } },
--               order = { i, ... } (on_result's order), at = { seconds, ... } (when each came),
--               calls = n (on_result calls), elapsed = seconds, stop = {kind, not_started} }
local issuing = require "pagsmile.issuing"
local json = require "pagsmile.issuing.json"

local M = {}

local now = require("pagsmile.issuing.core").monotime

local function card_summary(card)
  return { order_no = card.order_no, card_token = card.card_token, status = card.status }
end

local function err_summary(err)
  return { kind = err.kind, outcome = err.outcome, sent = err.sent, field = err.field,
           order_no = err.order_no, message = err.message, retryable = err.retryable }
end

--- Runs client:apply_cards(rows, opts) (rows: a list, or { iterate = n, every = k } for an
-- iterator of n rows where every k-th is valid and the others miss card_type) and summarises.
-- opts.raise_at = n: on_result raises on its n-th call; opts.close_at = n: it closes the client.
function M.run(client, rows, opts, make_row)
  local order, at, calls = {}, {}, 0
  local raise_at, close_at = opts.raise_at, opts.close_at
  local o = { concurrency = opts.concurrency, rate = opts.rate, timeout = opts.timeout,
              keep_results = opts.keep_results }
  local t0 = now()
  o.on_result = function(i, card, err)
    calls = calls + 1
    order[calls], at[calls] = i, now() - t0
    assert((card == nil) ~= (err == nil), "exactly one of card and err")
    if calls == close_at then client:close() end
    if calls == raise_at then error("on_result failed on purpose") end
  end
  local list = rows
  if rows.iterate then
    local n, every, k = rows.iterate, rows.every, 0
    list = function()
      if k >= n then return nil end
      k = k + 1
      local row = make_row()
      if k % every ~= 0 then row.card_type = nil end
      return row
    end
  end
  local results, stop = client:apply_cards(list, o)
  local s = { results = {}, order = order, at = at, calls = calls, elapsed = now() - t0,
              stop = stop and { kind = stop.kind, not_started = stop.not_started, message = stop.message } }
  for i, r in pairs(results) do
    s.results[i] = r.card and { card = card_summary(r.card) } or { err = err_summary(r.err) }
  end
  return s
end

--- Inside nginx: POST { client = options, rows = list or {iterate, every}, opts = ... } ->
-- the summary as JSON. A client per request, closed after.
function M.handler()
  ngx.req.read_body()
  local req = json.decode(assert(ngx.req.get_body_data(), "the body is in memory"))
  local client = assert(issuing.new(req.client))
  local s = M.run(client, req.rows, req.opts, function()
    return { order_no = ("ITER-%d-%d"):format(ngx.now() * 1000, math.random(1e9)), card_type = 1,
             holder = req.holder }
  end)
  client:close()
  -- results may have holes (rows not started): send them as a map keyed by index
  local by_index = {}
  for i, r in pairs(s.results) do by_index[tostring(i)] = r end
  s.results = by_index
  ngx.header["Content-Type"] = "application/json"
  ngx.print(json.encode(s))
end

return M
