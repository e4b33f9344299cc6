-- The command line as a user runs it (docs/CLI.md): `bin/pagsmile-issuing` as a process on this
-- runtime's interpreter, against a local emulator on loopback. Bulk runs from CSV and JSONL,
-- dry runs, the one-card commands, keygen, and where settings come from.
local envelope = require "pagsmile.issuing.envelope"
local json = require "pagsmile.issuing.json"
local helpers = require "helpers"
local kit = require "cli_kit"

local q = kit.q

describe("pagsmile-issuing apply --file", function()
  local ctx = kit.fixture(lazy_setup, lazy_teardown)
  before_each(function() assert(ctx.sb:reset()) end)

  it("a 300-row CSV with every quirk issues 300 cards; the text arrives byte for byte", function()
    local file, journal, out = ctx.dir .. "/quirks.csv", ctx.dir .. "/quirks.journal", ctx.dir .. "/results.csv"
    kit.csv(file, 300)
    local args = ("apply --file %s --journal %s --order-prefix QK --out %s"):format(q(file), q(journal), q(out))
    local r = kit.run(args, ctx.env)
    assert.equal(0, r.code, r.err)
    assert.matches("300 rows: 300 completed\n$", r.err)
    local results = kit.results(out)
    assert.equal(300, #results)
    local book, n = kit.book(ctx.sb)
    assert.equal(300, n)
    local cards = {}
    for i, res in ipairs(results) do
      local row, card = kit.row(i), book[res.order_no]
      assert.equal("completed", res.status)
      assert(card, "no order " .. res.order_no)
      assert.equal(tostring(card.card_id), res.card_id) -- a long id: exact on every runtime
      assert.equal(card.card_token, res.card_token)
      assert.equal(card.card_pan, res.card_pan)
      assert.matches("^%d%d%d%d%d%d%*+%d%d%d%d$", res.card_pan)
      assert.equal(row["holder.first_name"] .. " " .. row["holder.last_name"], card.holder_name)
      assert.equal(row.card_remark, card.card_remark)
      assert.equal(row.initial_balance ~= "" and row.initial_balance or nil, card.initial_balance)
      assert.equal(tonumber(row.card_type), card.card_type)
      if row.order_no ~= "" then assert.equal(row.order_no, res.order_no) end
      assert.is_nil(cards[res.card_id], "one card per row")
      cards[res.card_id] = true
    end

    -- The same command again: nothing left to do, nothing sent.
    local before = helpers.api_requests(ctx.sb)
    r = kit.run(args, ctx.env)
    assert.equal(0, r.code, r.err)
    assert.matches("300 already completed", r.err)
    assert.equal(before, helpers.api_requests(ctx.sb))
    assert.equal(300, #kit.results(out))
  end)

  describe("a file with 5 bad rows", function()
    local file

    lazy_setup(function()
      file = ctx.dir .. "/five-bad.csv"
      local bad = {
        [3] = function(row) row["holder.email"] = "not an email" end,
        [7] = function(row) row["holder.mobile"] = "" end,
        [8] = function(row) row.card_type = "two" end,
        [12] = function(row) row["holder.nationality_code"] = "Brazil" end,
        [16] = function(row) row["card_limit.daily_transactions"] = "20" end, -- without the rest
      }
      -- LF line ends; no notes over two lines, so that row i is on line i + 1
      kit.csv(file, 20, "\n", function(i, row)
        row["# notes for people"] = ""
        if bad[i] then bad[i](row) end
      end)
    end)

    it("--dry-run lists every error of every bad row with its line and field, and sends nothing", function()
      local r = kit.run(("apply --file %s --order-prefix DR --dry-run"):format(q(file)), ctx.env)
      assert.equal(1, r.code, r.err)
      local lines = {}
      for line in r.err:gmatch("[^\n]+") do lines[#lines + 1] = line end
      local want = {
        "five-bad.csv:4: holder.email: must be an email address (format)",
        "five-bad.csv:8: holder.mobile: is required (required)",
        "five-bad.csv:9: card_type: must be an integer (type)",
        "five-bad.csv:13: holder.nationality_code: must be an ISO 3166-1 alpha-2 code (two "
          .. "upper-case letters) (format)",
        "five-bad.csv:17: card_limit.single_amount: is required (required)",
      }
      for k, text in ipairs(want) do
        assert.truthy(lines[k]:find(text, 1, true), "line " .. k .. ": " .. tostring(lines[k]))
      end
      assert.matches("20 rows, 5 invalid; nothing was sent %(dry run%)", r.err)
      assert.equal(0, helpers.api_requests(ctx.sb))
    end)

    it("a real run refuses to start; --skip-invalid applies the others and records the rest", function()
      local journal, out = ctx.dir .. "/five-bad.journal", ctx.dir .. "/five-bad.jsonl"
      local r = kit.run(("apply --file %s --order-prefix DR --journal %s"):format(q(file), q(journal)), ctx.env)
      assert.equal(1, r.code, r.err)
      assert.matches("5 of 20 rows are invalid: nothing was sent", r.err)
      assert.equal(0, helpers.api_requests(ctx.sb))

      r = kit.run(("apply --file %s --order-prefix DR --journal %s --skip-invalid --out %s")
        :format(q(file), q(journal), q(out)), ctx.env)
      assert.equal(1, r.code, r.err)
      local _, n = kit.book(ctx.sb)
      assert.equal(15, n)
      local statuses = {}
      for line in helpers.read_file(out):gmatch("[^\n]+") do
        local res = assert(json.decode(line))
        statuses[res.status] = (statuses[res.status] or 0) + 1
        if res.status == "invalid" then assert.is_string(res.error) end
      end
      assert.same({ completed = 15, invalid = 5 }, statuses)
    end)
  end)

  it("JSONL with --json: one event per line, a row event per card, the last one 'done'", function()
    local file, journal = ctx.dir .. "/cards.jsonl", ctx.dir .. "/cards-jsonl.journal"
    local lines = {}
    for i = 1, 5 do
      lines[i] = assert(json.encode(helpers.biz { order_no = "JL-" .. os.time() .. "-" .. i }))
    end
    helpers.write_file(file, table.concat(lines, "\n") .. "\n")
    local r = kit.run(("apply --file %s --journal %s --json"):format(q(file), q(journal)), ctx.env)
    assert.equal(0, r.code, r.err)
    assert.equal("", r.err)
    local events = {}
    for line in r.out:gmatch("[^\n]+") do events[#events + 1] = assert(json.decode(line), line) end
    assert.equal("start", events[1].event)
    assert.equal(5, events[1].to_apply)
    for i = 2, 6 do
      assert.equal("row", events[i].event)
      assert.equal("completed", events[i].status)
      assert.matches("^%d+%*+%d+$", events[i].card_pan)
    end
    assert.same({ "done", 0, 5 }, { events[7].event, events[7].exit, events[7].completed })
  end)
end)

describe("the one-card commands", function()
  local ctx = kit.fixture(lazy_setup, lazy_teardown)

  it("apply - reads one biz_data from stdin and prints the card; query prints it again", function()
    local file = ctx.dir .. "/one.json"
    local biz = helpers.biz()
    helpers.write_file(file, assert(json.encode(biz)))
    local r = kit.run("apply -", ctx.env, file)
    assert.equal(0, r.code, r.err)
    local card = assert(json.decode(r.out))
    assert.same({ biz.order_no, "completed" }, { card.order_no, card.status })
    r = kit.run("query " .. q(biz.order_no), ctx.env)
    assert.equal(0, r.code, r.err)
    assert.equal(card.card_id, assert(json.decode(r.out)).card_id)
  end)

  it("apply --wait follows a processing order; without it the status is 3", function()
    local file = ctx.dir .. "/pending.json"
    local biz = helpers.biz()
    helpers.write_file(file, assert(json.encode(biz)))
    assert(ctx.sb:pending(biz.order_no, 2))
    local r = kit.run("apply " .. q(file), ctx.env)
    assert.equal(3, r.code, r.err)
    assert.equal("processing", assert(json.decode(r.out)).status)
    assert.matches("query " .. biz.order_no:gsub("%-", "%%-") .. " %-%-wait", r.err)
    r = kit.run("query --wait --wait-timeout 20 " .. q(biz.order_no), ctx.env)
    assert.equal(0, r.code, r.err)
    assert.equal("completed", assert(json.decode(r.out)).status)
  end)

  it("an unknown order is exit 1 with one line; a bad biz_data is 1 with every violation", function()
    local r = kit.run("query NO-SUCH-ORDER", ctx.env)
    assert.equal(1, r.code)
    assert.matches("^pagsmile%-issuing: [^\n]*order%-not%-found[^\n]*\n$", r.err)
    local file = ctx.dir .. "/bad.json"
    helpers.write_file(file, assert(json.encode(helpers.biz { card_type = "x",
      holder = helpers.holder { email = "nope" } })))
    r = kit.run("apply " .. q(file), ctx.env)
    assert.equal(1, r.code)
    assert.matches("card_type: must be an integer %(type%)", r.err)
    assert.matches("holder.email: must be an email address %(format%)", r.err)
    local before = helpers.api_requests(ctx.sb)
    helpers.write_file(file, assert(json.encode(helpers.biz())))
    r = kit.run("apply --dry-run " .. q(file), ctx.env)
    assert.equal(0, r.code, r.err)
    assert.matches("valid %(order_no [^)]+%); nothing was sent %(dry run%)", r.err)
    assert.equal(before, helpers.api_requests(ctx.sb))
  end)

  it("notification parses a sealed callback body; --confirm prints the platform's card", function()
    local biz = helpers.biz()
    local file = ctx.dir .. "/order.json"
    helpers.write_file(file, assert(json.encode(biz)))
    local card = assert(json.decode(kit.run("apply " .. q(file), ctx.env).out))
    local key = envelope.public_key(ctx.sb.merchant_public_key)
    local rk, data = envelope.seal(key, { order_no = biz.order_no, card_token = card.card_token,
      card_pan = card.card_pan, order_status = 5, notify_type = 1 })
    local body = ctx.dir .. "/note.json"
    helpers.write_file(body, assert(json.encode { partner_id = ctx.sb.partner_id, sub_partner_id = "",
      version = "1.0", timestamp = os.date("!%Y-%m-%d %H:%M:%S"), request_id = "note-1",
      notify_type = 1, sign_type = "RSA", random_key = rk, biz_data = data }))
    local r = kit.run("notification " .. q(body), ctx.env)
    assert.equal(0, r.code, r.err)
    local note = assert(json.decode(r.out))
    assert.same({ biz.order_no, true, false }, { note.order_no, note.sealed, note.confirmed })
    r = kit.run("notification --confirm -", ctx.env, body)
    assert.equal(0, r.code, r.err)
    note = assert(json.decode(r.out))
    assert.same({ card.card_id, true }, { note.card_id, note.confirmed })
  end)

  it("keygen writes the pair (private 0600), prints the Base64 key, and never overwrites", function()
    local keys = ctx.dir .. "/my keys"
    os.execute("mkdir " .. q(keys))
    local r = kit.run("keygen --out " .. q(keys))
    assert.equal(0, r.code, r.err)
    local b64 = r.out:match("^(%S+)\n$")
    assert.truthy(b64 and #b64 > 300, r.out)
    local public = assert(helpers.read_file(keys .. "/merchant_public.pem"))
    assert.equal(b64, helpers.pem_body(public))
    local private = assert(helpers.read_file(keys .. "/merchant_private.pem"))
    assert.matches("BEGIN PRIVATE KEY", private)
    assert.equal("600\n", (helpers.sh("stat -c %a " .. q(keys .. "/merchant_private.pem"))))
    r = kit.run("keygen --out " .. q(keys))
    assert.equal(2, r.code)
    assert.matches("merchant_private.pem exists", r.err)
    assert.equal(private, helpers.read_file(keys .. "/merchant_private.pem"))
  end)
end)

describe("settings: flags, then --config, then the environment", function()
  local ctx = kit.fixture(lazy_setup, lazy_teardown)

  it("a missing setting is one line naming its variable, exit 2", function()
    local r = kit.run("query X")
    assert.equal(2, r.code)
    assert.equal("pagsmile-issuing: PAGSMILE_APP_ID is not set (set it in the environment or a "
      .. "--config file, or pass --app-id)\n", r.err)
  end)

  it("the file wins over the environment and a flag over the file", function()
    local env = kit.env(ctx.sb, { PAGSMILE_APP_ID = "wrong-app" })
    local config = ctx.dir .. "/pagsmile.env"
    helpers.write_file(config, "# settings\nexport PAGSMILE_APP_ID='" .. ctx.sb.app_id .. "'\n")
    local orders = kit.run("query NO-SUCH --config " .. q(config), env)
    assert.equal(1, orders.code)
    assert.matches("order%-not%-found", orders.err) -- the right app_id reached the platform
    local r = kit.run("query NO-SUCH --app-id wrong-again --config " .. q(config), env)
    assert.matches("invalid%-app%-id", r.err)
    helpers.write_file(config, "PAGSMILE_APP_ID=x\nPAGSMILE_APP_IDD=y\n")
    r = kit.run("query NO-SUCH --config " .. q(config), env)
    assert.equal(2, r.code)
    assert.matches("pagsmile.env:2: PAGSMILE_APP_IDD is not one of the settings", r.err)
  end)

  it("a refused key file names the variable and where it came from", function()
    local env = kit.env(ctx.sb, { PAGSMILE_MERCHANT_PRIVATE_KEY_FILE = ctx.dir .. "/none.pem" })
    local r = kit.run("query X", env)
    assert.equal(2, r.code)
    assert.matches("^pagsmile%-issuing: PAGSMILE_MERCHANT_PRIVATE_KEY_FILE %(the environment%): "
      .. "merchant_private_key_file: [^\n]*\n$", r.err)
  end)
end)
