-- The flow a merchant runs around the apply (issue 13), end to end against the local
-- emulator over loopback, on libcurl in this process and on cosockets inside a real nginx
-- (spec/support/flow.lua runs the same code in both): create a cardholder → upload the ID
-- and the proof of address → wait for the approval → apply with that holder_id → card
-- details (the full PAN behind the apply's masked one) → update the limit → top up → the
-- balance shows it → revoke → a further top-up is refused.
local core = require "pagsmile.issuing.core"
local json = require "pagsmile.issuing.json"
local issuing = require "pagsmile.issuing"
local nginx = require "sandbox.nginx"
local helpers = require "helpers"
local around = require "support.around"
local flow = require "spec.support.flow"

local RUNNER = [[
  client_body_buffer_size 1m;
  client_max_body_size 1m;
  server {
    listen 127.0.0.1:${port};
    location = /flow { content_by_lua_block { require("spec.support.flow").handler() } }
  }
]]

describe("the flow around the apply", function()
  local sb, runner

  lazy_setup(function()
    sb = require("sandbox.launch").start {}
    assert(sb:settings { known_holders = true, holder_review_polls = 2 })
    runner = nginx.start { name = "flow-runner", http = RUNNER }
  end)
  lazy_teardown(function()
    if runner then runner.stop() end
    if sb then sb:stop() end
  end)

  local engines = {
    curl = function(input)
      local client = assert(issuing.new(sb:client_options()))
      local s = flow.run(client, input, core.sleep)
      client:close()
      return s
    end,
    ngx = function(input)
      return helpers.post_json(runner.url .. "/flow", { options = sb:client_options(), input = input })
    end,
  }

  for _, name in ipairs { "curl", "ngx" } do
    it("runs on " .. name, function()
      local id = around.png(3000)
      local input = {
        holder = around.holder(), id_hex = helpers.hex(id), pay_account_num = sb.partner_account,
        order_no = helpers.order_no("FLOW"), topup_order_no = helpers.order_no("TOP"),
        refused_order_no = helpers.order_no("TOP"),
      }
      local s = engines[name](input)
      assert.is_nil(s.failure, s.failure and json.encode(s.failure))
      -- the review: pending → reviewing (both documents) → approved, by polling
      assert.same({ "pending", "reviewing", "approved" }, s.audits)
      assert.equal(s.holder_id, s.card_holder_id)
      -- the full PAN is the masked one's, a valid 16-digit number on the BIN asked for
      assert.is_true(s.pan_matches)
      assert.is_true(s.luhn)
      assert.equal(16, s.pan_length)
      assert.matches("^658705%*%*%*%*%*%*%d%d%d%d$", s.card_pan)
      assert.is_false(s.info_shows_pan)
      assert.same({ "100.00", "250.00", "250.00" }, { s.daily_before, s.daily_after, s.remaining })
      assert.same({ "0.00", "25.00" }, { s.balance_before, s.balance_after })
      assert.equal("card-revoked", s.after_revoke)
      -- the emulator's side: the documents as sent, one move, the card revoked
      local holder = assert(sb:holders())[s.holder_id]
      assert.equal(1, holder.audit_status)
      assert.same({ #id, #"%PDF-1.4 utility bill\n" + 1500 },
        { holder.documents[1].size, holder.documents[2].size })
      local ledger = assert(sb:ledger()).orders
      assert.same({ 1, 1 }, { ledger[input.topup_order_no].requests, ledger[input.topup_order_no].moves })
      assert.equal(0, ledger[input.refused_order_no].moves)
      local card = assert(sb:cards())[s.card_token]
      assert.equal(6, card.card_status)
      assert.equal("0.00", card.balances.USD)
    end)
  end
end)
