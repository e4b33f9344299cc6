-- The apply-card result callback (SPEC.md §7): the sandbox POSTs it to a receiver nginx,
-- the spec fetches the raw body the receiver got and parses it (issue #3).
local issuing = require "pagsmile.issuing"
local core = require "pagsmile.issuing.core"
local launch = require "sandbox.launch"
local helpers = require "helpers"
local start_receiver = require("support.receiver").start

describe("parse_notification", function()
  local sb, receiver, client

  lazy_setup(function()
    receiver = start_receiver()
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
    return assert(receiver.next_callback(5), "no callback arrived")
  end

  it("parses an encrypted callback into the card table", function()
    local card = assert(client:apply_card(helpers.biz()))
    local raw = next_callback()
    assert.is_nil(raw:find(card.card_token, 1, true), "the card travels encrypted")
    local note, err = client:parse_notification(raw)
    assert.is_nil(err)
    assert.equal(1, note.notify_type)
    assert.is_true(note.sealed)
    assert.is_false(note.confirmed)
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

  it("parses a plain callback (empty sign_type) and says it was not sealed", function()
    sb:settings { callback_plain = true }
    local card = assert(client:apply_card(helpers.biz()))
    local raw = next_callback()
    sb:settings { callback_plain = false }
    local note = assert(client:parse_notification(raw))
    assert.is_false(note.sealed)
    assert.is_false(note.confirmed)
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
  describe("issue 9 item 5: forged callbacks", function()
    local QUERY = "/issuing/card/query-apply-card-result"

    local function queries() return sb:stats().requests[QUERY] or 0 end

    -- What anyone holding the merchant's PUBLIC key (pasted into a dashboard) can build.
    local function forged(biz, plain)
      local env = { partner_id = sb.partner_id, sub_partner_id = "", version = "1.0",
                    timestamp = os.date("!%Y-%m-%d %H:%M:%S"), request_id = core.request_id(),
                    notify_type = 1 }
      if plain then
        env.sign_type, env.biz_data = "", biz
      else
        local key = core.public_key(sb.merchant_public_key)
        env.sign_type = "RSA"
        env.random_key, env.biz_data = core.seal(key, biz)
        key:close()
      end
      return assert(core.json_encode(env))
    end

    local function claims(order_no, over)
      local biz = { order_no = order_no, card_token = "tok_forged00000000000000000",
                    card_pan = "658704******9999", holder_id = core.long("9007199254740993"),
                    holder_name = "Mallory", card_scheme = 3, card_type = 1, order_count = 1,
                    order_status = 5, is_share_card = false }
      for k, v in pairs(over or {}) do biz[k] = v end
      return biz
    end

    local function assert_no_secret(err)
      for _, s in ipairs { "tok_", "9999", "Mallory" } do
        assert.is_nil(tostring(err):find(s, 1, true), s)
      end
    end

    it("issue 9 item 5: a notification sealed with the merchant's public key is not trusted by parse", function()
      local note = assert(client:parse_notification(forged(claims(helpers.order_no("FORGED")))))
      assert.is_nil(note.encrypted) -- no field reads as a trust signal any more
      assert.is_true(note.sealed)   -- a fact about the bytes, not about the sender
      assert.is_false(note.confirmed)
    end)

    it("issue 9 item 5: confirm refuses a forged sealed notification for an order nobody applied for", function()
      local order_no = helpers.order_no("FORGED")
      local before = queries()
      local card, err = client:confirm_notification(forged(claims(order_no)))
      assert.is_nil(card)
      assert.equal("protocol", err.kind)
      assert.is_true(err.unknown_order)
      assert.is_false(err.retryable)
      assert.equal(order_no, err.order_no)
      assert.matches("the platform does not know this order", err.message, 1, true)
      assert_no_secret(err)
      assert.equal(before + 1, queries())
      assert.is_nil(sb:orders()[order_no], "confirming creates nothing")
    end)

    it("issue 9 item 5: confirm answers the platform's card to a forgery naming an existing order", function()
      local real = assert(client:apply_card(helpers.biz()))
      next_callback() -- the genuine one, not used here
      local forged_body = forged(claims(real.order_no))
      local card, err = client:confirm_notification(forged_body)
      assert.is_nil(err)
      assert.is_true(card.confirmed)
      assert.equal(1, card.notify_type)
      assert.equal(real.order_no, card.order_no)
      assert.equal(real.card_token, card.card_token) -- the platform's, not the forger's
      assert.equal(real.card_pan, card.card_pan)
      assert.equal(tostring(real.holder_id), tostring(card.holder_id))
      assert.equal("completed", card.status)
      assert.same({ "card_pan", "card_token", "holder_id" }, card.mismatch)
      -- a plain forgery the same
      card = assert(client:confirm_notification(forged(claims(real.order_no, { order_status = 3 }), true)))
      assert.equal(real.card_token, card.card_token)
      assert.equal("completed", card.status)
      assert.same({ "card_pan", "card_token", "holder_id", "order_status" }, card.mismatch)
    end)

    it("issue 9 item 5: confirm answers the platform's status, not the notification's", function()
      local biz = helpers.biz()
      sb:pending(biz.order_no, 3)
      local real = assert(client:apply_card(biz))
      assert.equal("processing", real.status)
      local card = assert(client:confirm_notification(forged(claims(biz.order_no))))
      assert.equal("processing", card.status) -- query 1 of 3: still processing
      assert.equal("", card.card_token)
      assert.same({ "card_pan", "card_token", "holder_id", "order_status" }, card.mismatch)
    end)

    it("issue 9 item 5: confirm passes a genuine notification, sealed or plain, with no mismatch", function()
      local real = assert(client:apply_card(helpers.biz()))
      local card = assert(client:confirm_notification(next_callback()))
      assert.is_true(card.confirmed)
      assert.is_nil(card.mismatch)
      assert.equal(real.card_token, card.card_token)
      assert.equal(1, card.notify_type)
      sb:settings { callback_plain = true }
      real = assert(client:apply_card(helpers.biz()))
      local raw = next_callback()
      sb:settings { callback_plain = false }
      card = assert(client:confirm_notification(raw))
      assert.is_true(card.confirmed)
      assert.is_nil(card.mismatch)
      assert.equal(real.card_token, card.card_token)
    end)

    it("issue 9 item 5: confirm refuses what does not parse, or names no valid order, without asking", function()
      local before = queries()
      for _, body in ipairs {
        "not json",
        forged({ order_status = 5 }),                                  -- no order_no
        forged(claims("not an order_no!")),                            -- not a valid order_no
        forged(claims(("A"):rep(40))),                                 -- too long
      } do
        local card, err = client:confirm_notification(body)
        assert.is_nil(card)
        assert.equal("protocol", err.kind)
        assert.is_false(err.retryable)
        assert_no_secret(err)
      end
      assert.equal(before, queries())
    end)

    it("issue 9 item 5: when the platform cannot be asked, confirm fails and says to try later", function()
      local o = sb:client_options()
      o.base_url, o.max_retries, o.timeout, o.connect_timeout = "http://127.0.0.1:1", 0, 2, 1
      local offline = assert(issuing.new(o))
      local card, err = offline:confirm_notification(forged(claims(helpers.order_no("OFF"))))
      offline:close()
      assert.is_nil(card)
      assert.equal("transport", err.kind)
      assert.is_true(err.retryable)
      assert_no_secret(err)
    end)
  end)
end)
