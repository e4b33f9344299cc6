-- The API reference (issue 10 item 13): `make doc` runs LDoc over config.ld. These specs read
-- what LDoc makes of the sources (its --filter dump: the same data the HTML is made from) and
-- compare it with the code and with real results from the local sandbox, so a setting, a
-- function, a method, a card field, an error field or a log field added without its
-- documentation (or documented but gone) fails here.
local issuing = require "pagsmile.issuing"
local Client = require "pagsmile.issuing.client"
local options = require "pagsmile.issuing.options"
local helpers = require "helpers"

local load_chunk = loadstring or load -- 5.1 has no load(string)

-- LDoc's view of the module: name → item (functions, methods as "Client:name", tables,
-- fields). LDoc runs on its own interpreter, whatever runtime busted runs on.
local function ldoc_items()
  local out, ok = helpers.sh("ldoc --filter pl.pretty.dump .")
  assert(ok, "ldoc failed (`make doc` says why): " .. out)
  local dump = assert(out:match("\n(%{\n.*)$") or out:match("^(%{\n.*)$"), "no LDoc dump")
  -- (pl.pretty.dump marks a table it has already shown as <cycle>)
  local modules = assert(load_chunk("return " .. dump:gsub("<cycle>", "false")))()
  assert.equal(1, #modules, "config.ld documents one module")
  assert.equal("pagsmile.issuing", modules[1].name)
  local items = {}
  for _, item in ipairs(modules[1].items) do items[item.name] = item end
  return items
end

-- The documented fields of a table item: name → type (every field must have one).
local function fields_of(item)
  assert(item, "table not documented")
  local types = {}
  for _, name in ipairs(item.params) do
    local mods = item.modifiers.field[name]
    types[name] = mods and mods.type or ""
  end
  return types
end

local function keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local function assert_documented(what, fields, seen)
  for _, k in ipairs(keys(seen)) do
    assert(fields[k], what .. "." .. tostring(k) .. " is not documented in docs/api.luadoc")
    assert(fields[k] ~= "", what .. "." .. k .. " is documented without a type")
  end
end

describe("issue 10 item 13: the API reference", function()
  local items

  lazy_setup(function() items = ldoc_items() end)

  it("documents every setting of issuing.new with a type, and no setting that is gone", function()
    local known
    for i = 1, math.huge do
      local name, value = debug.getupvalue(options.check, i)
      if not name then break end
      if name == "KNOWN" then known = value end
    end
    assert(known, "options.check has no KNOWN table of settings any more")
    local fields = fields_of(items.settings)
    assert_documented("settings", fields, known)
    for name in pairs(fields) do
      assert(known[name], "settings." .. name .. " is documented but is not a setting")
    end
  end)

  it("documents every function and field of the module, and every method of the client", function()
    for name, v in pairs(issuing) do
      local item = items[name]
      assert(item, "issuing." .. name .. " is not documented")
      assert.equal(type(v) == "function" and "function" or "field", item.type, name)
    end
    for name, v in pairs(Client) do
      -- Client.new is reached through issuing.new; _names and metamethods are private.
      if type(v) == "function" and not name:find("^_") and name ~= "new" then
        assert(items["Client:" .. name], "client:" .. name .. " is not documented")
      end
    end
    for name, item in pairs(items) do
      local method = name:match("^Client:(.*)$")
      if method then assert(Client[method], name .. " is documented but does not exist") end
      if item.type == "function" then
        -- every return value of a call has a type
        for _, group in ipairs(item.retgroups or {}) do
          for _, r in ipairs(group) do
            assert(r.type ~= "" or r.text == "nil", name .. " returns a value without a type")
          end
        end
      end
    end
  end)

  it("documents every field of real cards, notifications, errors and log events", function()
    local events = {}
    local sb, client = helpers.start_client({}, {
      log = function(e) for k in pairs(e) do events[k] = true end end,
      max_retries = 0,
    })
    local ok, err = pcall(function()
      local seen_card, seen_err = {}, {}
      local function card_seen(card, e)
        assert(card, e and tostring(e))
        for k in pairs(card) do seen_card[k] = true end
        return card
      end
      local function err_seen(card, e)
        assert.is_nil(card)
        for k in pairs(e) do seen_err[k] = true end
        return e
      end

      local biz = helpers.biz { card_limit = helpers.limits(), initial_balance = "10.00" }
      card_seen(client:apply_card(biz))
      card_seen(client:query_apply_result(biz.order_no))
      -- an api error (duplicate-order-no), a validation error, a config error
      err_seen(client:apply_card(biz))
      err_seen(client:apply_card(helpers.biz { card_type = "one" }))
      err_seen(issuing.new { app_id = 1 })
      -- a timeout carrying the last card: an order the sandbox keeps processing
      local pending = helpers.biz()
      sb:pending(pending.order_no, 1000)
      local e = err_seen(client:apply_card_and_wait(pending, { timeout = 0.5, interval = 0.1 }))
      assert.equal("timeout", e.kind)
      -- notifications: one that claims its own card, confirmed against the platform's
      local body = ('{"partner_id":"%s","notify_type":1,"request_id":"n-1","biz_data":'
        .. '{"order_no":"%s","order_status":5,"card_token":"tok_forged"}}')
        :format(sb.partner_id, biz.order_no)
      card_seen(client:parse_notification(body))
      local confirmed = card_seen(client:confirm_notification(body))
      assert.same({ "card_token" }, confirmed.mismatch)
      err_seen(client:parse_notification("not json"))
      -- a transport error: nobody listens on this port
      local down = sb:client_options()
      down.base_url = "http://127.0.0.1:" .. require("sandbox.nginx").free_port()
      down.max_retries, down.timeout, down.connect_timeout = 0, 2, 1
      local c2 = assert(issuing.new(down))
      err_seen(c2:query_apply_result("ORDER-1"))
      c2:close()

      assert_documented("card", fields_of(items.card), seen_card)
      assert_documented("error", fields_of(items.error), seen_err)
      assert_documented("log_event", fields_of(items.log_event), events)
    end)
    helpers.stop_client(sb, client)
    assert(ok, err)
  end)

  it("builds the HTML without a warning", function()
    local dir = helpers.tmpdir("doc")
    local _, ok = helpers.sh("ldoc --fatalwarnings -d " .. dir .. " .")
    local html = helpers.read_file(dir .. "/index.html")
    os.execute("rm -rf '" .. dir .. "'")
    assert.is_true(ok)
    assert.matches("Client:apply_card", html, 1, true)
    assert.matches("merchant_private_key", html, 1, true)
  end)
end)
