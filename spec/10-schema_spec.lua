-- luacheck: std +busted
-- The biz_data schema of SPEC.md §5 and §6 and its validator: one group per rule family,
-- each asserting the exact field path and reason.
local schema = require "pagsmile.issuing.schema"
local core = require "pagsmile.issuing.core"

local APPLY = schema.apply_card

local function full_body()
  return {
    order_no = "ORD-2024_0001",
    card_type = 1,
    card_bin = "658705",
    is_share_card = false,
    shared_account_num = "SA-1",
    pay_account_num = "PA-1",
    initial_balance = "100.00",
    card_remark = "team card",
    card_limit = {
      daily_transactions = 10,
      single_amount = "500",
      daily_amount = "1000.5",
      monthly_amount = "20000.00",
      total_amount = "100000",
    },
    holder = {
      mobile = "+5511987654321",
      first_name = "José",
      last_name = "da Silva",
      id_no = "12345678909",
      id_type = 1,
      issuance_date = "2015-06-01",
      expires_on = "2030-06-01",
      email = "jose.silva@example.com.br",
      birthday = "1990-02-28",
      gender = 1,
      nationality_code = "BR",
      address = {
        line = "Rua das Flores, 123",
        line2 = "Apto 45",
        postal_code = "01310100",
        city_name = "São Paulo",
        state = "São Paulo",
        country_code = "BR",
      },
    },
  }
end

local function deep_copy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = deep_copy(v) end
  return c
end

-- Sets (or with value nil removes) the dotted path in t; returns t.
local function set(t, path, value)
  local node = t
  local parts = {}
  for part in path:gmatch("[^.]+") do parts[#parts + 1] = part end
  for i = 1, #parts - 1 do node = node[parts[i]] end
  node[parts[#parts]] = value
  return t
end

local function body_with(path, value)
  return set(full_body(), path, value)
end

local function expect_fail(body, field, reason, sch)
  local clean, f, r = schema.validate(sch or APPLY, body)
  assert.is_nil(clean)
  assert.equal(field, f)
  assert.equal(reason, r)
end

local function expect_ok(body, sch)
  local clean, f, r = schema.validate(sch or APPLY, body)
  assert.is_table(clean, tostring(f) .. ": " .. tostring(r))
  return clean
end

-- Runs every (value, reason) case against one path; a nil reason means the value passes.
-- A failure must never echo the offending value.
local function cases(path, list)
  for _, case in ipairs(list) do
    local value, reason = case[1], case[2]
    local body = body_with(path, value)
    if reason then
      expect_fail(body, path, reason)
      if type(value) == "string" and #value >= 3 then
        local _, _, r = schema.validate(APPLY, body_with(path, value))
        assert.is_nil(r:find(value, 1, true))
      end
    else
      local clean = expect_ok(body)
      local node = clean
      for part in path:gmatch("[^.]+") do node = node[part] end
      assert.equal(value, node)
    end
  end
end

describe("schema #core", function()
  describe("valid bodies", function()
    it("a full apply body with holder, address and card_limit passes into a new table", function()
      local body = full_body()
      local clean = expect_ok(body)
      assert.are_not.equal(body, clean)
      assert.are_not.equal(body.holder, clean.holder)
      assert.are_not.equal(body.holder.address, clean.holder.address)
      assert.are_not.equal(body.card_limit, clean.card_limit)
      assert.equal(3, clean.card_scheme)
      local expected = full_body()
      expected.card_scheme = 3
      assert.same(expected, clean)
    end)

    it("the holder_id variant passes and holder_id becomes a long", function()
      local body = full_body()
      body.holder = nil
      body.holder_id = 102012
      local clean = expect_ok(body)
      assert.is_nil(clean.holder)
      assert.is_true(core.is_long(clean.holder_id))
      assert.equal("102012", tostring(clean.holder_id))
    end)

    if rawget(_G, "jit") then -- LuaJIT only: its 64-bit integer literals (OpenResty code)
      it("holder_id as LuaJIT's 9007199254740993LL stays exact", function()
        local body = full_body()
        body.holder = nil
        body.holder_id = assert(loadstring("return 9007199254740993LL"))()
        local clean = expect_ok(body)
        assert.equal("9007199254740993", tostring(clean.holder_id))
        assert.equal('{"h":9007199254740993}', core.json_encode { h = clean.holder_id })
      end)
    end

    it("a minimal body (no optional fields) passes and gains only card_scheme", function()
      local clean = expect_ok({ order_no = "A1", card_type = 3, holder_id = "7" })
      assert.equal(3, clean.card_scheme)
      assert.is_nil(clean.card_bin)
      assert.is_nil(clean.card_limit)
      assert.equal("7", tostring(clean.holder_id))
    end)

    it("a JSON null (core.null) counts as absent", function()
      assert.is_not_nil(core.null)
      local clean = expect_ok(body_with("card_limit", core.null))
      assert.is_nil(clean.card_limit)
      local body = body_with("holder_id", core.null)
      body.card_bin = core.null
      clean = expect_ok(body)
      assert.is_nil(clean.holder_id)
      assert.is_nil(clean.card_bin)
      expect_fail(body_with("order_no", core.null), "order_no", "is required")
      expect_fail(body_with("holder", core.null), "holder", "is required when holder_id is not given")
    end)

    it("query_apply_result takes order_no", function()
      local clean = expect_ok({ order_no = "A1" }, schema.query_apply_result)
      assert.same({ order_no = "A1" }, clean)
      expect_fail({}, "order_no", "is required", schema.query_apply_result)
      expect_fail({ order_no = "A 1" }, "order_no", "must be 1 to 32 characters of A-Z a-z 0-9 _ -",
        schema.query_apply_result)
      expect_fail({ order_no = "A1", card_type = 1 }, "card_type",
        "is not a field of query_apply_result", schema.query_apply_result)
    end)
  end)

  describe("the caller's table", function()
    it("is unchanged after a successful validate", function()
      local body = full_body()
      local holder, address = body.holder, body.holder.address
      local before = deep_copy(body)
      expect_ok(body)
      assert.same(before, body)
      assert.is_nil(body.card_scheme)
      assert.equal(holder, body.holder)
      assert.equal(address, body.holder.address)
    end)

    it("is unchanged after a failed validate", function()
      local body = body_with("holder.address.line", "short")
      local before = deep_copy(body)
      expect_fail(body, "holder.address.line", "must be 12 to 128 characters")
      assert.same(before, body)
    end)

    it("must be a table (programmer error)", function()
      assert.has_error(function() schema.validate(APPLY, "x") end, "biz_data must be a table")
      assert.has_error(function() schema.validate(APPLY, nil) end, "biz_data must be a table")
    end)
  end)

  describe("required fields", function()
    it("top-level", function()
      expect_fail(body_with("order_no", nil), "order_no", "is required")
      expect_fail(body_with("card_type", nil), "card_type", "is required")
    end)

    it("nested in holder", function()
      for _, name in ipairs({ "mobile", "first_name", "last_name", "id_no", "id_type", "email",
                              "birthday", "nationality_code", "address" }) do
        expect_fail(body_with("holder." .. name, nil), "holder." .. name, "is required")
      end
      for _, name in ipairs({ "issuance_date", "expires_on", "gender" }) do
        assert.is_table(schema.validate(APPLY, body_with("holder." .. name, nil)))
      end
    end)

    it("nested in holder.address", function()
      for _, name in ipairs({ "line", "postal_code", "city_name", "state", "country_code" }) do
        expect_fail(body_with("holder.address." .. name, nil), "holder.address." .. name,
          "is required")
      end
      assert.is_table(schema.validate(APPLY, body_with("holder.address.line2", nil)))
    end)

    it("the first violation in SPEC.md order wins", function()
      local body = full_body()
      body.holder = { address = {} }
      expect_fail(body, "holder.mobile", "is required")
      body.holder = full_body().holder
      body.holder.address = {}
      expect_fail(body, "holder.address.line", "is required")
      expect_fail({}, "order_no", "is required")
      expect_fail({ order_no = "A1" }, "card_type", "is required")
    end)
  end)

  describe("types", function()
    it("integers", function()
      cases("card_type", {
        { "1", "must be an integer" }, { 1.5, "must be an integer" }, { true, "must be an integer" },
        { 0, "must be a positive integer" }, { -1, "must be a positive integer" }, { 3 },
      })
      cases("holder.id_type", { { "1", "must be an integer" }, { 0 / 0, "must be an integer" },
        { math.huge, "must be an integer" }, { 2 ^ 60, "must be an integer" }, { 2 } })
      cases("holder.gender", { { 1.25, "must be an integer" }, { 2 } })
      cases("card_limit.daily_transactions", { { "10", "must be an integer" }, { 0 } })
    end)

    it("an integral float is an integer, copied unchanged", function()
      local clean = expect_ok(body_with("card_type", 2.0))
      assert.equal(2.0, clean.card_type)
      if math.type then assert.equal(math.type(2.0), math.type(clean.card_type)) end
    end)

    it("booleans, strings and objects", function()
      cases("is_share_card", { { "true", "must be a boolean" }, { 1, "must be a boolean" }, { true } })
      cases("holder.first_name", { { 5, "must be a string" }, { {}, "must be a string" } })
      cases("card_remark", { { false, "must be a string" } })
      cases("holder", { { "x", "must be an object (table)" }, { 1, "must be an object (table)" } })
      cases("holder.address", { { "Rua das Flores, 123", "must be an object (table)" } })
      cases("card_limit", { { true, "must be an object (table)" } })
    end)
  end)

  describe("lengths in characters", function()
    it("counts UTF-8 code points, not bytes", function()
      local fifty = ("é"):rep(50)
      assert.equal(100, #fifty)
      cases("holder.first_name", {
        { fifty }, { fifty .. "é", "must be 1 to 50 characters" },
        { ("a"):rep(51), "must be 1 to 50 characters" }, { ("日"):rep(50) },
        { ("𝄞"):rep(51), "must be 1 to 50 characters" }, { "", "must be 1 to 50 characters" },
      })
      cases("holder.last_name", { { ("ü"):rep(51), "must be 1 to 50 characters" } })
    end)

    it("ranges a-b", function()
      cases("holder.id_no", {
        { "12345", "must be 6 to 20 characters" }, { "123456" }, { ("9"):rep(20) },
        { ("9"):rep(21), "must be 6 to 20 characters" },
      })
      cases("holder.address.line", {
        { ("x"):rep(11), "must be 12 to 128 characters" }, { ("ç"):rep(12) },
        { ("ç"):rep(128) }, { ("ç"):rep(129), "must be 12 to 128 characters" },
      })
      cases("holder.address.line2", { { ("y"):rep(129), "must be at most 128 characters" } })
      cases("holder.address.postal_code", { { "123", "must be 4 to 8 characters" },
        { "123456789", "must be 4 to 8 characters" }, { "1234" } })
      cases("holder.address.city_name", { { "Rio", "must be 4 to 80 characters" }, { "Itú1" } })
      cases("holder.address.state", { { "SP", "must be 4 to 48 characters" },
        { ("s"):rep(49), "must be 4 to 48 characters" } })
    end)

    it("free-text fields are capped at 255", function()
      for _, name in ipairs({ "shared_account_num", "pay_account_num", "card_remark" }) do
        cases(name, { { ("r"):rep(255) }, { ("r"):rep(256), "must be at most 255 characters" } })
      end
    end)
  end)

  describe("order_no", function()
    it("is 1 to 32 characters of A-Z a-z 0-9 _ -", function()
      local reason = "must be 1 to 32 characters of A-Z a-z 0-9 _ -"
      cases("order_no", {
        { "" , reason }, { ("a"):rep(33), reason }, { "ord 1", reason }, { "ord/1", reason },
        { "pedido-é", reason }, { 12345, "must be a string" },
        { ("Z"):rep(32) }, { "A-z_09" }, { "1" },
      })
    end)
  end)

  describe("holder.mobile and holder.email", function()
    it("mobile is + and 7 to 15 digits", function()
      local reason = "must be an international number like +5511987654321"
      cases("holder.mobile", {
        { "4420794601234", reason }, { "+123456", reason }, { "+1234567" },
        { "+123456789012345" }, { "+1234567890123456", reason }, { "+55 11 98765-4321", reason },
        { "++5511987654", reason }, { 5511987654321, "must be a string" },
      })
    end)

    it("email is loose: one @, a local part and a dotted domain", function()
      local reason = "must be an email address"
      cases("holder.email", {
        { "a@b.co" }, { "first.last+tag@mail.example.org" }, { "josé@exemplo.com.br" },
        { "ab.co", reason }, { "a@@b.co", reason }, { "a@b@c.co", reason }, { "@b.co", reason },
        { "a@b", reason }, { "a@.co", reason }, { "a@b.", reason }, { "a b@c.co", reason },
        { ("a"):rep(75) .. "@b.com", "must be at most 80 characters" },
        { ("a"):rep(74) .. "@b.com" },
      })
    end)
  end)

  describe("dates", function()
    it("have the yyyy-MM-dd shape", function()
      local reason = "must be a real date in yyyy-MM-dd form"
      cases("holder.birthday", {
        { "1990-2-28", reason }, { "90-02-28", reason }, { "1990/02/28", reason },
        { "1990-02-28 ", reason }, { "1990-02-28T00:00:00", reason }, { "19900228", reason },
        { "", reason }, { 19900228, "must be a string" },
      })
    end)

    it("are real calendar dates", function()
      local reason = "must be a real date in yyyy-MM-dd form"
      cases("holder.birthday", {
        { "2024-02-29" }, { "2000-02-29" }, { "2023-02-29", reason }, { "1900-02-29", reason },
        { "2024-02-30", reason }, { "2024-13-01", reason }, { "2024-00-10", reason },
        { "2024-04-31", reason }, { "2024-04-30" }, { "2024-12-31" }, { "2024-01-00", reason },
        { "2024-01-32", reason },
      })
      cases("holder.issuance_date", { { "2023-02-29", reason }, { "2020-01-01" } })
      cases("holder.expires_on", { { "2031-11-31", reason }, { "2031-11-30" } })
    end)
  end)

  describe("country codes", function()
    it("are assigned ISO 3166-1 alpha-2 codes in upper case", function()
      local reason = "must be an ISO 3166-1 alpha-2 code (two upper-case letters)"
      cases("holder.nationality_code", {
        { "BR" }, { "US" }, { "AX" }, { "ZW" }, { "SS" },
        { "br", reason }, { "XX", reason }, { "BRA", reason }, { "B", reason }, { "", reason },
        { "UK", reason }, { 55, "must be a string" },
      })
      cases("holder.address.country_code", { { "PT" }, { "Br", reason }, { "ZZ", reason } })
    end)
  end)

  describe("decimal amounts", function()
    it("are strings of digits with up to 2 decimals and 12 integer digits", function()
      local reason = 'must be a decimal amount like "100.00"'
      cases("initial_balance", {
        { "10" }, { "10.5" }, { "1234.56" }, { "0.01" }, { "123456789012.99" }, { "0" },
        { "1234567890123", reason }, { "-1", reason }, { "+1", reason }, { "1e3", reason },
        { " 1", reason }, { "1 ", reason }, { "1.", reason }, { ".5", reason },
        { "1.234", reason }, { "1,00", reason }, { "", reason }, { "1.2.3", reason },
        { "1234567890123.5", reason },
      })
    end)

    it("refuse Lua numbers (they lose cents)", function()
      cases("initial_balance", { { 10.5, "must be a string (decimal amount)" },
        { 100, "must be a string (decimal amount)" } })
      cases("card_limit.single_amount", { { 5, "must be a string (decimal amount)" } })
      cases("card_limit.total_amount", { { "1.999", 'must be a decimal amount like "100.00"' },
        { "1.99" } })
    end)
  end)

  describe("card_bin and card_scheme", function()
    it("card_bin is 658704 or 658705, no default inserted", function()
      local reason = "must be one of 658704, 658705"
      cases("card_bin", { { "658704" }, { "658705" }, { "658706", reason }, { "", reason },
        { 658704, "must be a string" } })
      assert.is_nil(expect_ok(body_with("card_bin", nil)).card_bin)
    end)

    it("card_scheme is 3, filled in when absent", function()
      assert.equal(3, expect_ok(body_with("card_scheme", nil)).card_scheme)
      assert.equal(3, expect_ok(body_with("card_scheme", 3)).card_scheme)
      cases("card_scheme", { { 4, "must be 3" }, { "3", "must be 3" }, { 0, "must be 3" } })
    end)
  end)

  describe("exactly one of holder_id and holder", function()
    it("refuses both", function()
      expect_fail(body_with("holder_id", 42), "holder_id",
        "give exactly one of holder_id and holder, not both")
    end)

    it("refuses neither", function()
      expect_fail(body_with("holder", nil), "holder", "is required when holder_id is not given")
    end)

    it("checks the fields before the pair", function()
      local body = body_with("holder_id", "12a")
      expect_fail(body, "holder_id", "must be a 64-bit integer (number or decimal string)")
    end)
  end)

  describe("card_limit", function()
    it("is all-or-nothing for its four required fields", function()
      expect_ok(body_with("card_limit", nil))
      expect_fail(body_with("card_limit", {}), "card_limit.daily_transactions", "is required")
      expect_fail(body_with("card_limit", { daily_transactions = 1 }), "card_limit.single_amount",
        "is required")
      expect_fail(body_with("card_limit", { daily_transactions = 1, single_amount = "1",
        daily_amount = "2" }), "card_limit.monthly_amount", "is required")
      for _, name in ipairs({ "daily_transactions", "single_amount", "daily_amount",
                              "monthly_amount" }) do
        expect_fail(body_with("card_limit." .. name, nil), "card_limit." .. name, "is required")
      end
      assert.is_nil(expect_ok(body_with("card_limit.total_amount", nil)).card_limit.total_amount)
    end)
  end)

  describe("unknown fields", function()
    it("are refused with a suggestion at the top level", function()
      local body = full_body()
      body.card_limt = body.card_limit
      body.card_limit = nil
      expect_fail(body, "card_limt", 'is not a field of apply_card (did you mean "card_limit"?)')
      expect_fail(body_with("ordr_no", "x"), "ordr_no",
        'is not a field of apply_card (did you mean "order_no"?)')
      expect_fail(body_with("cardtpye", 1), "cardtpye",
        'is not a field of apply_card (did you mean "card_type"?)')
    end)

    it("are refused without a suggestion when nothing is close", function()
      expect_fail(body_with("callback_url", "x"), "callback_url", "is not a field of apply_card")
      expect_fail(body_with("holder.nickname", "x"), "holder.nickname",
        "is not a field of holder")
    end)

    it("are refused in nested objects under the object's path", function()
      expect_fail(body_with("holder.frist_name", "x"), "holder.frist_name",
        'is not a field of holder (did you mean "first_name"?)')
      expect_fail(body_with("holder.address.stat", "x"), "holder.address.stat",
        'is not a field of holder.address (did you mean "state"?)')
      expect_fail(body_with("card_limit.daily_amout", "1"), "card_limit.daily_amout",
        'is not a field of card_limit (did you mean "daily_amount"?)')
    end)

    it("come before other checks, the first by name", function()
      expect_fail({ zeta = 1, alpha = 2, beta = 3 }, "alpha", "is not a field of apply_card")
      local body = body_with("order_no", nil)
      body.holder.cpf = "x"
      expect_fail(body, "order_no", "is required")
      expect_fail(body_with("holder.cpf", "x"), "holder.cpf", "is not a field of holder")
    end)

    it("non-string keys are unknown fields too", function()
      local body = full_body()
      body[1] = "x"
      expect_fail(body, "[1]", "is not a field of apply_card")
    end)
  end)

  describe("text", function()
    it("must be valid UTF-8", function()
      local reason = "must be valid UTF-8"
      cases("holder.first_name", {
        { "ab\192\128", reason },          -- overlong NUL
        { "ab\193\191", reason },          -- overlong 2-byte
        { "ab\224\128\175", reason },      -- overlong 3-byte
        { "ab\240\128\128\175", reason },  -- overlong 4-byte
        { "ab\237\160\128", reason },      -- surrogate U+D800
        { "ab\237\191\191", reason },      -- surrogate U+DFFF
        { "ab\244\144\128\128", reason },  -- U+110000
        { "ab\245\128\128\128", reason },  -- lead byte beyond U+10FFFF
        { "ab\195", reason },              -- truncated 2-byte
        { "ab\226\130", reason },          -- truncated 3-byte
        { "ab\240\159\152", reason },      -- truncated 4-byte
        { "ab\128cd", reason },            -- stray continuation
        { "ab\195(", reason },             -- bad continuation
        { "ab\255", reason },
        { "\237\159\191x" },               -- U+D7FF
        { "\238\128\128x" },               -- U+E000
        { "\244\143\191\191x" },           -- U+10FFFF
        { "€ and 𝄞" },
      })
      cases("card_remark", { { "ok\192\175", reason } })
      cases("holder.address.line", { { "Rua das Flores \255", reason } })
    end)

    it("must not contain control characters (C0, DEL, C1)", function()
      local reason = "must not contain control characters"
      cases("holder.last_name", {
        { "Silva\0", reason }, { "Sil\tva", reason }, { "Silva\n", reason }, { "\27[31m", reason },
        { "Silva\127", reason }, { "Silva\194\133", reason }, { "Silva\194\159", reason },
        { "Silva\194\160" },                -- U+00A0 is not a control character
      })
      cases("order_no", { { "A1\n", reason } })
      cases("holder.address.city_name", { { "São\rPaulo", reason } })
      cases("card_bin", { { "658704\0", reason } })
      cases("initial_balance", { { "1\0", reason } })
    end)
  end)

  describe("long ids", function()
    local reason = "must be a 64-bit integer (number or decimal string)"

    local function long_of(value)
      local body = full_body()
      body.holder = nil
      body.holder_id = value
      return schema.validate(APPLY, body)
    end

    it("accept numbers and decimal strings and keep them exact", function()
      for _, case in ipairs({
        { 42, "42" }, { "42", "42" }, { "9007199254740993", "9007199254740993" },
        { "9223372036854775807", "9223372036854775807" },
        { "-9223372036854775808", "-9223372036854775808" }, { 2 ^ 53 - 1, "9007199254740991" },
      }) do
        local clean, f, r = long_of(case[1])
        assert.is_table(clean, tostring(f) .. ": " .. tostring(r))
        assert.is_true(core.is_long(clean.holder_id))
        assert.equal(case[2], tostring(clean.holder_id))
      end
      if math.maxinteger then
        assert.equal(tostring(math.maxinteger), tostring(long_of(math.maxinteger).holder_id))
      end
    end)

    it("refuse what is not a 64-bit integer", function()
      for _, value in ipairs({ "9223372036854775808", "-9223372036854775809",
                               "99999999999999999999", "10000000000000000000", "12a", "", "-",
                               "1.0", " 1", "+1", "0x10", "007",
                               1.5, 2 ^ 54, true, {},
                               -- issue 10 item 9: a double of 2^53 may be a rounded 2^53 + 1
                               -- (lua-cjson decodes 9007199254740993 so): not an exact id
                               2 ^ 53, -2 ^ 53 }) do
        local clean, f, r = long_of(value)
        assert.is_nil(clean)
        assert.equal("holder_id", f)
        assert.equal(reason, r)
      end
    end)

    it("a long already made by the core passes through", function()
      local long = core.long("9007199254740993")
      local clean = long_of(long)
      assert.equal("9007199254740993", tostring(clean.holder_id))
    end)
  end)

  describe("every violation (issue 10 item 10)", function()
    local issuing = require "pagsmile.issuing"

    -- A body with one mistake of each kind, in different objects.
    local function messy()
      local body = body_with("order_no", nil)
      body.zeta = 1
      body.card_type = 0
      body.card_limit.single_amount = 5
      body.holder.frist_name, body.holder.first_name = body.holder.first_name, nil
      body.holder.email = "not-an-email"
      body.holder.address.line = "short"
      return body
    end

    it("issue 10 item 10: issuing.validate returns true for valid biz_data", function()
      assert.same({ true }, { issuing.validate("apply_card", full_body()) })
      assert.same({ true }, { issuing.validate("query_apply_result", { order_no = "A-1" }) })
    end)

    it("issue 10 item 10: issuing.validate lists every violation with field, rule, reason and message", function()
      local body = messy()
      local ok, list = issuing.validate("apply_card", body)
      assert.is_nil(ok)
      local got = {}
      for i, v in ipairs(list) do
        assert.equal(schema.describe_error(v.field, v.reason), v.message)
        got[i] = { v.field, v.rule, v.reason }
      end
      assert.same({
        { "zeta", "unknown", "is not a field of apply_card" },
        { "order_no", "required", "is required" },
        { "card_type", "range", "must be a positive integer" },
        { "card_limit.single_amount", "type", "must be a string (decimal amount)" },
        { "holder.frist_name", "unknown", 'is not a field of holder (did you mean "first_name"?)' },
        { "holder.first_name", "required", "is required" },
        { "holder.email", "format", "must be an email address" },
        { "holder.address.line", "length", "must be 12 to 128 characters" },
      }, got)
      assert.same(messy(), body) -- biz_data is never modified
      assert.is_nil(select(2, issuing.validate("apply_card", body))[7].message:find("not-an-email"))
    end)

    it("issue 10 item 10: the first of the list is the client's one error", function()
      local bodies = { messy(), body_with("holder.birthday", "1990-02-30"), body_with("card_bin", "1"),
        body_with("card_scheme", 2), body_with("holder.gender", 1.5), body_with("holder.id_no", "a\1b"),
        body_with("holder_id", 42), body_with("holder", nil), { zeta = 1, alpha = 2 }, {} }
      for _, body in ipairs(bodies) do
        local _, field, reason = schema.validate(APPLY, body)
        local _, list = schema.validate_all(APPLY, body)
        assert.equal(field, list[1].field)
        assert.equal(reason, list[1].reason)
      end
    end)

    it("issue 10 item 10: each field of the list once, with its rule", function()
      local _, list = schema.validate_all(APPLY, { zeta = 1, alpha = 2, card_type = "1",
        card_bin = "1", card_scheme = 2, holder_id = "12a", holder = {} })
      local got = {}
      for i, v in ipairs(list) do got[i] = v.field .. " " .. v.rule end
      assert.same({ "alpha unknown", "zeta unknown", "order_no required", "card_scheme const",
        "card_type type", "card_bin enum", "holder_id type", "holder.mobile required",
        "holder.first_name required", "holder.last_name required", "holder.id_no required",
        "holder.id_type required", "holder.email required", "holder.birthday required",
        "holder.nationality_code required", "holder.address required",
        "holder_id exactly_one_of" }, got)
    end)

    it("issue 10 item 10: text and exactly-one rules", function()
      local _, list = schema.validate_all(APPLY, body_with("card_remark", "a\1b"))
      assert.same({ field = "card_remark", rule = "text", reason = "must not contain control characters",
                    message = "card_remark: must not contain control characters" }, list[1])
      _, list = schema.validate_all(APPLY, body_with("holder", nil))
      assert.same({ "holder", "exactly_one_of" }, { list[1].field, list[1].rule })
      assert.equal(1, #list)
    end)

    it("issue 10 item 10: an unknown endpoint or a biz_data that is no table is a caller's bug", function()
      -- the message lists every endpoint of the table, sorted (issue 13 made it grow)
      local names = {}
      for name in pairs(require "pagsmile.issuing.endpoints") do names[#names + 1] = name end
      table.sort(names)
      assert(#names > 2 and names[1] == "apply_card")
      assert.has_error(function() issuing.validate("apply_cards", {}) end,
        'pagsmile.issuing.validate: unknown endpoint "apply_cards" (' .. table.concat(names, ", ") .. ')')
      assert.has_error(function() issuing.validate("apply_card", "{}") end,
        "pagsmile.issuing.validate: biz_data must be a table")
    end)
  end)

  describe("describe_error", function()
    it("makes the one sentence", function()
      assert.equal("holder.email: must be an email address",
        schema.describe_error("holder.email", "must be an email address"))
      local _, f, r = schema.validate(APPLY, body_with("holder.address.line", "short"))
      assert.equal("holder.address.line: must be 12 to 128 characters", schema.describe_error(f, r))
    end)
  end)
end)
