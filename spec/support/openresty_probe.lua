-- luacheck: globals ngx
-- Inside the example merchant service of examples/openresty/ (spec 40): a test-only server
-- that runs the example's client (merchant.lua) where the example does not, one function a
-- location of /t/. Answers are text or JSON the spec reads:
--   init_worker()     (init_worker_by_lua) the client without cosockets: the error, kept
--   phase()           ?name= a kept result of a phase ("init_worker", "")
--   body()            "body", for header_filter() to run after
--   header_filter()   ?order_no= queried in the header filter (?transport=curl: a curl
--                     client made there): X-Kind "card" or the error's kind, X-Field, X-Message
--   proxy()           a client with a proxy the cosockets cannot honour: kind|field|message
--   timer()           ?order_no= queried in a timer: card|status|order_no or kind|message
--   drip()            15 pieces 0.1 s apart            through_drip()   drip() through the
--                     cosocket transport with 0.5 s timeouts: answer|status or kind|sent
--   client()          tostring of the worker's client
--   query()           ?order_no= queried through both transports: { ngx = …, curl = … }
--   apply()           the JSON body applied for through the worker's client: the card or { error }
local json = require "pagsmile.issuing.json"
local merchant = require "merchant"

local probe = {}

local function kind_field_message(err)
  return err.kind .. "|" .. tostring(err.field) .. "|" .. err.message
end

function probe.init_worker()
  local _, err = merchant.client():query_apply_result("INIT-WORKER-1")
  ngx.shared.phase_results:set("init_worker", err and kind_field_message(err) or "no error")
end

function probe.phase()
  ngx.print(ngx.shared.phase_results:get(ngx.var.arg_name) or "")
end

function probe.body()
  ngx.print("body")
end

function probe.header_filter()
  local c = ngx.var.arg_transport == "curl" and assert(merchant.new_client{ transport = "curl" })
            or merchant.client()
  local card, err = c:query_apply_result(ngx.var.arg_order_no)
  if c ~= merchant.client() then c:close() end
  ngx.header["X-Kind"] = card and "card" or err.kind
  ngx.header["X-Field"] = err and err.field
  ngx.header["X-Message"] = card and card.status or err.message
end

function probe.proxy()
  local c = assert(merchant.new_client{ proxy = "http://127.0.0.1:1" })
  local _, err = c:query_apply_result("PROXY-1")
  c:close()
  ngx.print(kind_field_message(err))
end

function probe.timer()
  local order_no, dict = ngx.var.arg_order_no, ngx.shared.phase_results
  dict:delete("timer")
  assert(ngx.timer.at(0, function(premature)
    if premature then return end
    local card, err = merchant.client():query_apply_result(order_no)
    dict:set("timer", card and ("card|" .. card.status .. "|" .. card.order_no)
                      or (err.kind .. "|" .. err.message))
  end))
  for _ = 1, 200 do
    local v = dict:get("timer")
    if v then return ngx.print(v) end
    ngx.sleep(0.02)
  end
  ngx.status = 504
end

function probe.drip()
  for i = 1, 15 do
    ngx.print("piece ", i, "\n")
    ngx.flush(true)
    ngx.sleep(0.1)
  end
end

function probe.through_drip()
  local t = require("pagsmile.issuing.transport.ngx").new()
  local res, err = t:request{ method = "GET", timeout = 0.5, connect_timeout = 0.5,
                              url = "http://127.0.0.1:" .. ngx.var.server_port .. "/t/drip" }
  ngx.print(res and ("answer|" .. res.status) or (err.kind .. "|" .. tostring(err.sent)))
end

function probe.client()
  ngx.print(tostring(merchant.client()))
end

function probe.query()
  local curl = assert(merchant.new_client{ transport = "curl" })
  local a, aerr = merchant.client():query_apply_result(ngx.var.arg_order_no)
  local b, berr = curl:query_apply_result(ngx.var.arg_order_no)
  curl:close()
  ngx.print(json.encode{ ngx = a or tostring(aerr), curl = b or tostring(berr) })
end

function probe.apply()
  ngx.req.read_body()
  local card, err = merchant.client():apply_card(json.decode(ngx.req.get_body_data()))
  ngx.print(json.encode(card or { error = tostring(err) }))
end

return probe
