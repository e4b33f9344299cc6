-- The apply-card result callback (SPEC.md §7): the sandbox POSTs it to a receiver nginx,
-- the spec fetches the raw body the receiver got and parses it (issue #3).
local issuing = require "pagsmile.issuing"
local core = require "pagsmile.issuing.core"
local launch = require "sandbox.launch"
local nginx = require "sandbox.nginx"
local http = require "socket.http"
local socket = require "socket"
local helpers = require "helpers"

local RECEIVER = [[
  lua_shared_dict got 1m;
  server {
    listen 127.0.0.1:${port};
    location = /callback {
      content_by_lua_block {
        ngx.req.read_body()
        local d = ngx.shared.got
        local n = d:incr("n", 1, 0)
        d:set(n, ngx.req.get_body_data() or "")
        ngx.say("ok")
      }
    }
    location = /got {
      content_by_lua_block { ngx.print(ngx.shared.got:get(tonumber(ngx.var.arg_n)) or "") }
    }
  }
]]

describe("parse_notification", function()
  local sb, receiver, client
  local received = 0

  lazy_setup(function()
    receiver = nginx.start { name = "receiver", http = RECEIVER }
    sb = launch.start { callback_url = receiver.url .. "/callback" }
    client = assert(issuing.new(sb:client_options()))
  end)

  lazy_teardown(function()
    if client then client:close() end
    if sb then sb:stop() end
    if receiver then receiver.stop() end
  end)

  -- The next raw callback body the receiver got (waits up to 5 s).
  local function next_callback()
    received = received + 1
    for _ = 1, 250 do
      local body = http.request(receiver.url .. "/got?n=" .. received)
      if body and body ~= "" then return body end
      socket.sleep(0.02)
    end
    error("no callback arrived")
  end

  it("parses an encrypted callback into the card table", function()
    local card = assert(client:apply_card(helpers.biz()))
    local raw = next_callback()
    assert.is_nil(raw:find(card.card_token, 1, true), "the card travels encrypted")
    local note, err = client:parse_notification(raw)
    assert.is_nil(err)
    assert.equal(1, note.notify_type)
    assert.is_true(note.encrypted)
    assert.equal(card.order_no, note.order_no)
    assert.equal(card.card_token, note.card_token)
    assert.equal(card.card_pan, note.card_pan)
    assert.equal(tostring(card.holder_id), tostring(note.holder_id))
    assert.equal("completed", note.status)
    assert.is_true(note.completed)
    assert.matches("^%x+%-", note.request_id)
    -- The same notification delivered twice parses the same: handlers key on order_no.
    local again = assert(client:parse_notification(raw))
    assert.equal(note.order_no, again.order_no)
    assert.equal(note.request_id, again.request_id)
  end)

  it("parses a plain callback (empty sign_type) and says it was not encrypted", function()
    sb:settings { callback_plain = true }
    local card = assert(client:apply_card(helpers.biz()))
    local raw = next_callback()
    sb:settings { callback_plain = false }
    local note = assert(client:parse_notification(raw))
    assert.is_false(note.encrypted)
    assert.equal(card.order_no, note.order_no)
    assert.equal(card.card_token, note.card_token)
  end)

  it("a pending order calls back once it completes", function()
    local biz = helpers.biz()
    sb:pending(biz.order_no, 1)
    local card = assert(client:apply_card(biz))
    assert.equal("processing", card.status)
    assert(client:query_apply_result(biz.order_no))
    local note = assert(client:parse_notification(next_callback()))
    assert.equal(biz.order_no, note.order_no)
    assert.equal("completed", note.status)
  end)

  it("refuses what is not a notification for this merchant", function()
    local cases = {
      "", "not json", "[1]",
      core.json_encode { partner_id = "someone-else", sign_type = "", biz_data = { order_no = "X" } },
      core.json_encode { partner_id = sb.partner_id, sign_type = "RSA", biz_data = "A1B2C3D4E5F60718AAAA" },
      core.json_encode { partner_id = sb.partner_id, sign_type = "RSA", random_key = "AAAA",
                         biz_data = "A1B2C3D4E5F60718AAAA" },
      core.json_encode { partner_id = sb.partner_id, sign_type = "" },
    }
    for _, raw in ipairs(cases) do
      local note, err = client:parse_notification(raw)
      assert.is_nil(note)
      assert.equal("protocol", err.kind)
    end
    -- Sealed for another merchant's key.
    local other = core.public_key(helpers.keypair("stranger").public_pem)
    local rk, data = core.seal(other, { order_no = "X" })
    local note, err = client:parse_notification(core.json_encode {
      partner_id = sb.partner_id, sign_type = "RSA", random_key = rk, biz_data = data })
    assert.is_nil(note)
    assert.equal("protocol", err.kind)
  end)
end)
