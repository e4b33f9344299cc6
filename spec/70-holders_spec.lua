-- Cardholders and their KYC documents (SPEC.md §9, §10) against the local emulator over
-- loopback: create, query (by id and by the document pair), full-replace update, documents
-- read from bytes or a path, checked and Base64-encoded by the library, the review from
-- pending to approved, its notification, and an apply that must name an approved holder.
local issuing = require "pagsmile.issuing"
local json = require "pagsmile.issuing.json"
local document = require "pagsmile.issuing.document"
local nginx = require "sandbox.nginx"
local helpers = require "helpers"
local around = require "support.around"

local RECEIVER = require("support.receiver").CONFIG -- POST /callback, GET /got?n=N

describe("cardholders", function()
  local sb, client, receiver, dir
  local notes -- the receiver's bodies, in order

  lazy_setup(function()
    receiver = nginx.start { name = "receiver", http = RECEIVER }
    notes = around.notifications(receiver)
    sb, client = helpers.start_client()
    dir = helpers.tmpdir("holders")
  end)
  lazy_teardown(function()
    helpers.stop_client(sb, client)
    if receiver then receiver.stop() end
    if dir then os.execute("rm -rf '" .. dir .. "'") end
  end)

  local function next_notification() return notes() end

  it("creates a cardholder, pending review, found by holder_id and by (id_no, id_type)", function()
    local h = around.holder()
    local made, err = client:create_holder(h)
    assert.is_nil(err)
    assert.equal("string", type(made.holder_id))
    assert.matches("^%d+$", made.holder_id)
    assert.is_true(#made.holder_id >= 16) -- the emulator's ids are above 2^53: exact
    assert.equal(h.id_no, made.id_no)
    assert.equal(3, made.audit_status)
    assert.equal("pending", made.audit)
    assert.is_false(made.approved)
    local by_id = assert(client:query_holder { holder_id = made.holder_id })
    local by_doc = assert(client:query_holder { id_no = h.id_no, id_type = h.id_type })
    for _, got in ipairs { by_id, by_doc } do
      assert.equal(made.holder_id, got.holder_id)
      assert.equal(h.email, got.email)
      assert.equal(h.address.city_name, got.address.city_name)
      assert.equal(0, got.status)
    end
    -- holder_id as a decimal string, a long, or (below 2^53) a number are the same holder
    assert.equal(made.holder_id, assert(client:query_holder { holder_id = issuing.long(made.holder_id) }).holder_id)
  end)

  it("refuses a second cardholder with the same (id_no, id_type), pointing at query_holder", function()
    local h = around.holder()
    local made = assert(client:create_holder(h))
    local again, err = client:create_holder(h)
    assert.is_nil(again)
    assert.equal("api", err.kind)
    assert.equal("holder-exists", err.sub_code)
    assert.matches("query_holder", err.message, 1, true)
    assert.is_nil(err.outcome)
    assert.is_nil(err.message:find(h.id_no, 1, true)) -- personal data is never echoed
    assert.equal(made.holder_id, assert(client:query_holder { id_no = h.id_no, id_type = 1 }).holder_id)
  end)

  it("an unknown cardholder is the documented refusal, by either key", function()
    local _, err = client:query_holder { holder_id = "9007199254740001" }
    assert.equal("holder-not-found", err.sub_code)
    assert.equal("9007199254740001", err.holder_id)
    _, err = client:query_holder { id_no = around.id_no(), id_type = 1 }
    assert.equal("holder-not-found", err.sub_code)
  end)

  it("update_holder replaces the record: the new id_no finds it, the old one no more", function()
    local h = around.holder()
    local made = assert(client:create_holder(h))
    local new = around.holder { email = "ana.new@example.com" }
    new.holder_id = made.holder_id
    local updated, err = client:update_holder(new)
    assert.is_nil(err)
    assert.equal(made.holder_id, updated.holder_id)
    assert.equal(new.id_no, updated.id_no)
    local got = assert(client:query_holder { id_no = new.id_no, id_type = 1 })
    assert.equal("ana.new@example.com", got.email)
    local _, gone = client:query_holder { id_no = h.id_no, id_type = 1 }
    assert.equal("holder-not-found", gone.sub_code)
  end)

  it("documents from bytes and from a path: checked, Base64-encoded, then the review approves", function()
    assert(sb:settings { holder_review_polls = 2 })
    assert(client:create_webhook { webhook_type = 3, webhook_url = receiver.url .. "/callback" })
    local made = assert(client:create_holder(around.holder()))
    local id_bytes = around.png(5000)
    local up, err = client:upload_holder_document { holder_id = made.holder_id, file_type = 1,
      file_name = "passport.PNG", file_content = id_bytes, file_desc = "passport" }
    assert.is_nil(err)
    assert.is_true(up.ok)
    assert.matches("^%d+$", up.id)
    assert.equal(made.holder_id, up.holder_id)
    assert.equal("pending", assert(client:query_holder { holder_id = made.holder_id }).audit)
    local path = dir .. "/utility bill.pdf"
    helpers.write_file(path, "%PDF-1.4\n" .. ("\0\255"):rep(3000))
    assert(client:upload_holder_document { holder_id = made.holder_id, file_type = 2,
      file_name = "bill.pdf", file_path = path })
    -- what the emulator decoded: every byte arrived
    local docs = assert(sb:holders())[made.holder_id].documents
    assert.equal(2, #docs)
    assert.equal(#id_bytes, docs[1].size)
    assert.equal(#"%PDF-1.4\n" + 6000, docs[2].size)
    -- under review, approved on the second query after both documents
    local first = assert(client:query_holder { holder_id = made.holder_id })
    assert.equal("reviewing", first.audit)
    local second = assert(client:query_holder { holder_id = made.holder_id })
    assert.equal("approved", second.audit)
    assert.is_true(second.approved)
    assert.equal(1, second.status)
    -- the audit notifications (pending → reviewing → approved) reach the type-3 webhook
    local seen = {}
    for _ = 1, 2 do
      local note = assert(client:parse_notification(next_notification()))
      assert.equal("holder_audit", note.event)
      assert.equal(3, note.notify_type)
      assert.equal(made.holder_id, note.holder_id)
      seen[#seen + 1] = note.status
    end
    assert.same({ 4, 1 }, seen)
    -- confirmed against Query Cardholder: what the platform says now
    local confirmed = assert(client:confirm_notification(json.encode {
      partner_id = sb.partner_id, notify_type = 3, sign_type = "",
      biz_data = { holder_id = made.holder_id, pre_status = 4, status = 1 } }))
    assert.is_true(confirmed.confirmed)
    assert.is_nil(confirmed.mismatch)
    assert.equal("approved", confirmed.audit)
  end)

  it("Base64 as the standard says, for every length and every byte value", function()
    local samples = { "", "f", "fo", "foo", "foob", "fooba", "foobar", around.png(4099) }
    local expected = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" }
    for i, s in ipairs(samples) do
      local b64 = document.base64(s)
      if expected[i] then assert.equal(expected[i], b64) end
      assert.equal(s, helpers.b64decode(b64, dir), "round trip of " .. #s .. " bytes")
    end
  end)

  it("an apply names an existing, approved cardholder (known_holders)", function()
    assert(sb:settings { known_holders = true })
    finally(function() assert(sb:settings { known_holders = false }) end)
    local _, err = client:apply_card(helpers.biz { holder = helpers.NIL, holder_id = "9007199254740001" })
    assert.equal("api", err.kind)
    assert.equal("holder-not-found", err.sub_code)
    local pending = assert(client:create_holder(around.holder()))
    _, err = client:apply_card(helpers.biz { holder = helpers.NIL, holder_id = pending.holder_id })
    assert.equal("holder-not-approved", err.sub_code)
    local approved = around.approved_holder(client, sb)
    local card = assert(client:apply_card(helpers.biz { holder = helpers.NIL, holder_id = approved.holder_id }))
    assert.equal(approved.holder_id, card.holder_id)
    assert.equal("Ana Souza", card.holder_name)
  end)
end)
