-- One client call as plain data, made the same way by the specs (curl transport, in the
-- busted process) and by fault_kit's runner nginx (ngx transport): { card | err, elapsed }.
-- input: { options, call = "apply" | "query", biz_data, order_no }; clock() gives seconds.
-- luacheck: globals ngx
local issuing = require "pagsmile.issuing"
local json = require "pagsmile.issuing.json"

local M = {}

-- The fields of an error a spec looks at.
function M.error_view(err)
  return {
    kind = err.kind, message = err.message, text = tostring(err), sent = err.sent,
    retryable = err.retryable, outcome = err.outcome, order_no = err.order_no,
    request_id = err.request_id, http_status = err.http_status, code = err.code,
    sub_code = err.sub_code,
  }
end

function M.card_view(card)
  return { order_no = card.order_no, card_token = card.card_token, card_pan = card.card_pan,
           status = card.status, card_id = tostring(card.card_id) }
end

-- input.dead_from = N: the Nth request of the call and every later one go to a port where
-- nothing listens (a real "connection refused", never sent), over the transport the client
-- would use (input.transport_name: "curl" or "ngx").
local function dead_from(n, transport_name, dead_port)
  local real = require("pagsmile.issuing.transport." .. transport_name).new {}
  local w, count = { real = real }, 0
  function w.request(_, req)
    count = count + 1
    if count >= n then
      local r = {}
      for k, v in pairs(req) do r[k] = v end
      r.url = req.url:gsub("^(https?://[^/]+)", "http://127.0.0.1:" .. dead_port)
      req = r
    end
    return real:request(req)
  end
  return w
end

function M.run(input, clock)
  local t0 = clock()
  local wrapper
  if input.dead_from then
    wrapper = dead_from(input.dead_from, input.options.transport or "curl", input.dead_port)
    input.options.transport = wrapper
  end
  local client, err = issuing.new(input.options)
  local card
  if client and input.close_on_log then
    -- close() from the call's own log callback, at its first HTTP attempt
    client.o.log = function(e) if e.event == "http" then client:close() end end
  end
  if client and input.close_after then
    -- close() from another light thread while the call is in flight (inside nginx)
    ngx.thread.spawn(function() ngx.sleep(input.close_after) client:close() end)
  end
  if client then
    if input.call == "query" then card, err = client:query_apply_result(input.order_no)
    else card, err = client:apply_card(input.biz_data) end
    client:close()
  end
  if wrapper then wrapper.real:close() end
  local out = { elapsed = clock() - t0 }
  if client then -- were the keys freed once the call ended?
    out.freed = not pcall(client.o.platform_key.bits, client.o.platform_key)
  end
  if card then out.card = M.card_view(card) else out.err = M.error_view(err) end
  return out
end

-- Inside fault_kit's runner nginx: POST /run with an input as JSON, the call made on the ngx
-- transport, its outcome as JSON.
function M.serve()
  ngx.req.read_body()
  local input = json.decode(ngx.req.get_body_data())
  input.options.transport = "ngx"
  local out = M.run(input, function()
    ngx.update_time()
    return ngx.now()
  end)
  ngx.header["Content-Type"] = "application/json"
  ngx.print(json.encode(out))
end

return M
