-- Bad input through the public API: a validation error naming the field and the rule, and
-- nothing reaches the sandbox (issue #3). One spec per rule family.
local helpers = require "helpers"

describe("apply_card validation", function()
  local sb, client

  lazy_setup(function() sb, client = helpers.start_client() end)
  lazy_teardown(function() helpers.stop_client(sb, client) end)

  -- Applies `biz`, expects a validation error on `field` whose reason matches `reason`,
  -- and checks that the sandbox saw no request at all.
  local function refused(biz, field, reason)
    local before = helpers.api_requests(sb)
    local card, err = client:apply_card(biz)
    assert.is_nil(card)
    assert.equal("validation", err.kind)
    assert.equal(field, err.field)
    assert.matches(reason, err.reason)
    assert.equal(field .. ": " .. err.reason, err.message)
    assert.equal(before, helpers.api_requests(sb), "the sandbox received a request")
    return err
  end

  local function with_holder(path, value)
    local h = helpers.holder()
    local t, k = h, nil
    for part in path:gmatch("[^.]+") do
      if k then t = t[k] end
      k = part
    end
    if value == helpers.NIL then t[k] = nil else t[k] = value end
    return helpers.biz { holder = h }
  end

  it("required fields, top-level and nested", function()
    refused(helpers.biz { order_no = helpers.NIL }, "order_no", "is required")
    refused(helpers.biz { card_type = helpers.NIL }, "card_type", "is required")
    refused(with_holder("email", helpers.NIL), "holder.email", "is required")
    refused(with_holder("address.city_name", helpers.NIL), "holder.address.city_name", "is required")
  end)

  it("types", function()
    refused(helpers.biz { card_type = "1" }, "card_type", "must be an integer")
    refused(helpers.biz { is_share_card = "yes" }, "is_share_card", "must be a boolean")
    refused(helpers.biz { holder = "Ana" }, "holder", "must be an object")
    refused(with_holder("first_name", 7), "holder.first_name", "must be a string")
  end)

  it("lengths in characters", function()
    refused(with_holder("first_name", ("é"):rep(51)), "holder.first_name", "50 characters")
    refused(with_holder("id_no", "12345"), "holder.id_no", "must be 6 to 20 characters")
    refused(with_holder("address.line", "Rua 1"), "holder.address.line", "must be 12 to 128 characters")
    refused(helpers.biz { order_no = ("A"):rep(33) }, "order_no", "1 to 32 characters")
  end)

  it("dates that exist", function()
    refused(with_holder("birthday", "1990-02-30"), "holder.birthday", "real date")
    refused(with_holder("birthday", "12/04/1990"), "holder.birthday", "yyyy%-MM%-dd")
    refused(with_holder("expires_on", "2031-13-01"), "holder.expires_on", "real date")
  end)

  it("ISO country codes", function()
    refused(with_holder("nationality_code", "XX"), "holder.nationality_code", "ISO 3166%-1")
    refused(with_holder("address.country_code", "br"), "holder.address.country_code", "ISO 3166%-1")
  end)

  it("decimal amounts", function()
    refused(helpers.biz { initial_balance = 10.5 }, "initial_balance", "must be a string")
    refused(helpers.biz { initial_balance = "1e3" }, "initial_balance", "decimal amount")
    local limits = helpers.limits()
    limits.daily_amount = "-5"
    refused(helpers.biz { card_limit = limits }, "card_limit.daily_amount", "decimal amount")
  end)

  it("card_bin values and the fixed card_scheme", function()
    refused(helpers.biz { card_bin = "411111" }, "card_bin", "658704, 658705")
    refused(helpers.biz { card_scheme = 1 }, "card_scheme", "must be 3")
  end)

  it("exactly one of holder_id and holder", function()
    refused(helpers.biz { holder_id = 5 }, "holder_id", "exactly one")
    refused(helpers.biz { holder = helpers.NIL }, "holder", "is required when holder_id is not given")
  end)

  it("card_limit is all or nothing", function()
    local limits = helpers.limits()
    limits.monthly_amount = nil
    refused(helpers.biz { card_limit = limits }, "card_limit.monthly_amount", "is required")
  end)

  it("unknown field names, with a suggestion for a typo", function()
    local err = refused(helpers.biz { card_limt = helpers.limits() }, "card_limt", "is not a field")
    assert.matches('did you mean "card_limit"', err.reason)
    refused(with_holder("adress", {}), "holder.adress", "is not a field of holder")
  end)

  it("invalid UTF-8 and control characters", function()
    refused(with_holder("first_name", "An\255a"), "holder.first_name", "valid UTF%-8")
    refused(with_holder("last_name", "So\nuza"), "holder.last_name", "control characters")
  end)

  it("long ids", function()
    refused(helpers.biz { holder = helpers.NIL, holder_id = "9223372036854775808" },
      "holder_id", "64%-bit integer")
    refused(helpers.biz { holder = helpers.NIL, holder_id = "12a" }, "holder_id", "64%-bit integer")
  end)

  it("never echoes the value in the error", function()
    local err = refused(with_holder("email", "ana.souza-at-example.com"), "holder.email", "email")
    assert.is_nil(tostring(err):find("ana.souza", 1, true))
  end)

  it("a non-table biz_data is a programming error and raises", function()
    assert.has_error(function() client:apply_card("order") end)
  end)
end)
