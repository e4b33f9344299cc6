-- The validation rules of the calls around the apply, as data: one spec per rule family,
-- each row a call with one broken field. Every row must be a `validation` error naming the
-- field, with nothing sent to the emulator; `issuing.validate` (the dry run) names the same
-- field and the rule family. The `file` family is the client's own reading of a document.
local issuing = require "pagsmile.issuing"
local helpers = require "helpers"
local around = require "support.around"

local MiB2 = 2 * 1024 * 1024

-- A valid argument of each method; a row changes one thing of it.
local function valid(method)
  local h = around.holder()
  local base = {
    create_holder = h,
    update_holder = (function() local u = around.holder() u.holder_id = "9007199254740993" return u end)(),
    query_holder = { holder_id = "9007199254740993" },
    upload_holder_document = { holder_id = 5, file_type = 1, file_name = "id.png", file_content = "x" },
    query_card_info = { card_token = "tok_1" },
    revoke_card = { card_token = "tok_1" },
    query_remaining_limit = { card_token = "tok_1" },
    query_card_limit = { card_token = "tok_1" },
    update_card_limit = { limit_id = 1, card_token = "tok_1", daily_transactions = 5,
      single_amount = "1.00", daily_amount = "2.00", monthly_amount = "3.00" },
    create_webhook = { webhook_type = 1, webhook_url = "https://example.com/hook" },
    query_webhooks = {},
    recharge = { pay_account_num = "104190000004", card_token = "tok_1", order_no = "O-1",
      amount = "1.00", currency = "USD" },
    recharge_return = { payee_account_num = "104190000004", card_token = "tok_1",
      order_no = "O-1", amount = "1.00", currency = "USD" },
    query_transaction = { transaction_id = "1" },
    query_card_transactions = { start_date = "2024-01-01", end_date = "2024-01-31" },
    card_transactions = { start_date = "2024-01-01", end_date = "2024-03-31" },
  }
  return assert(base[method], method)
end

-- `set`: dotted paths → value (helpers.NIL removes), or a whole table in `arg`.
local function arg_of(row)
  if row.arg then return row.arg end
  local a = valid(row[1])
  for path, v in pairs(row.set or {}) do
    local t, k = a, nil
    for part in path:gmatch("[^.]+") do
      if k then t = t[k] end
      k = part
    end
    if v == helpers.NIL then t[k] = nil else t[k] = v end
  end
  return a
end

local FAMILIES = {
  required = {
    { "create_holder", set = { first_name = helpers.NIL }, field = "first_name", reason = "is required" },
    { "create_holder", set = { ["address.city_name"] = helpers.NIL }, field = "address.city_name",
      reason = "is required" },
    { "update_holder", set = { holder_id = helpers.NIL }, field = "holder_id", reason = "is required" },
    { "upload_holder_document", set = { file_name = helpers.NIL }, field = "file_name", reason = "is required" },
    { "update_card_limit", set = { limit_id = helpers.NIL }, field = "limit_id", reason = "is required" },
    { "create_webhook", set = { webhook_url = helpers.NIL }, field = "webhook_url", reason = "is required" },
    { "recharge", set = { amount = helpers.NIL }, field = "amount", reason = "is required" },
    { "recharge_return", set = { payee_account_num = helpers.NIL }, field = "payee_account_num",
      reason = "is required" },
    { "query_remaining_limit", arg = {}, field = "card_token", reason = "is required" },
    { "query_holder", arg = { id_no = "ABC1234" }, field = "id_type", reason = "is required with id_no" },
    { "card_transactions", set = { end_date = helpers.NIL }, field = "end_date", reason = "is required" },
  },
  type = {
    { "create_holder", set = { id_type = "1" }, field = "id_type", reason = "must be an integer" },
    { "query_card_info", arg = { card_token = 42.5 }, field = "card_token", reason = "must be a string" },
    { "recharge", set = { amount = 5 }, field = "amount", reason = "must be a string" },
    { "update_card_limit", set = { daily_transactions = "ten" }, field = "daily_transactions",
      reason = "must be an integer" },
    { "upload_holder_document", set = { file_content = 7 }, field = "file_content",
      reason = "must be a string of bytes" },
    { "create_webhook", set = { webhook_type = "2" }, field = "webhook_type", reason = "must be an integer" },
    { "query_holder", arg = { holder_id = "12a" }, field = "holder_id", reason = "64%-bit integer" },
  },
  length = {
    { "create_holder", set = { id_no = "12345" }, field = "id_no", reason = "6 to 20 characters" },
    { "recharge", set = { order_no = ("A"):rep(33) }, field = "order_no", reason = "1 to 32 characters" },
    { "recharge", set = { card_token = ("7"):rep(49) }, field = "card_token", reason = "1 to 48 characters" },
    { "recharge", set = { reference = ("r"):rep(129) }, field = "reference", reason = "at most 128" },
    { "upload_holder_document", set = { file_name = "a.pd" }, field = "file_name", reason = "5 to 80" },
    { "upload_holder_document", set = { file_content = ("\0"):rep(MiB2 + 1) }, field = "file_content",
      reason = "1 to 2097152 bytes" },
    { "create_webhook", set = { webhook_url = "https://e.com/" .. ("p"):rep(115) },
      field = "webhook_url", reason = "at most 128" },
  },
  format = {
    { "recharge", set = { currency = "usd" }, field = "currency", reason = "ISO 4217" },
    { "recharge_return", set = { amount = "1.234" }, field = "amount", reason = "decimal amount" },
    { "query_remaining_limit", arg = { card_token = "t", stat_date = "2024-02-30" }, field = "stat_date",
      reason = "real date" },
    { "create_webhook", set = { webhook_url = "ftp://example.com/x" }, field = "webhook_url",
      reason = "http%(s%) URL" },
    { "upload_holder_document", set = { file_name = "scan.gif" }, field = "file_name",
      reason = "must end in %.pdf, %.jpg" },
    { "create_holder", set = { nationality_code = "br" }, field = "nationality_code", reason = "ISO 3166" },
    { "update_holder", set = { mobile = "5511987654321" }, field = "mobile", reason = "international" },
  },
  range = {
    { "query_card_transactions", set = { page_size = 31 }, field = "page_size", reason = "from 1 to 30" },
    { "query_card_transactions", set = { end_date = "2024-02-01" }, field = "end_date",
      reason = "31 days at most" },
    { "card_transactions", set = { end_date = "2023-12-31" }, field = "end_date",
      reason = "must not be before start_date" },
    { "update_card_limit", set = { daily_transactions = -1 }, field = "daily_transactions",
      reason = "at least 0" },
    { "create_webhook", set = { webhook_type = 0 }, field = "webhook_type", reason = "positive" },
  },
  exactly_one_of = {
    { "query_holder", arg = {}, field = "id_no", reason = "is required when holder_id is not given" },
    { "query_holder", arg = { holder_id = 1, id_no = "ABC1234", id_type = 1 }, field = "holder_id",
      reason = "exactly one of holder_id and %(id_no, id_type%)" },
    { "query_card_limit", arg = {}, field = "card_token", reason = "is required when limit_id" },
    { "query_transaction", arg = { transaction_id = "1", order_no = "A" }, field = "transaction_id",
      reason = "not both" },
    { "upload_holder_document", set = { file_path = "/tmp/x.png" }, field = "file_content",
      reason = "not both" },
  },
  requires = {
    { "query_transaction", arg = { transaction_id = "5", transaction_type = 121 },
      field = "transaction_type", reason = "is given only with order_no" },
  },
  unknown = {
    { "recharge", set = { ammount = "1.00" }, field = "ammount", reason = 'did you mean "amount"' },
    { "query_webhooks", arg = { sub_partner_id = "x" }, field = "sub_partner_id",
      reason = "is not a field of query_webhooks" },
  },
  text = {
    { "create_webhook", set = { webhook_desc = "a\1b" }, field = "webhook_desc", reason = "control characters" },
    { "update_holder", set = { first_name = "Ana\255" }, field = "first_name", reason = "valid UTF%-8" },
  },
}

describe("validation of the calls around the apply, by rule family", function()
  local sb, client, dir

  lazy_setup(function()
    sb, client = helpers.start_client()
    dir = helpers.tmpdir("validation")
  end)
  lazy_teardown(function()
    helpers.stop_client(sb, client)
    if dir then os.execute("rm -rf '" .. dir .. "'") end
  end)

  -- The call's error, nothing sent.
  local function refused(method, arg, field, reason)
    local before = helpers.api_requests(sb)
    local result, err
    if method == "card_transactions" then
      result, err = client:card_transactions(arg)()
      assert.is_false(result)
    elseif client[method] then
      result, err = client[method](client, arg)
      assert.is_nil(result)
    else -- an endpoint without a method of its own (one page of a list)
      result, err = client:call(method, arg)
      assert.is_nil(result)
    end
    assert.equal("validation", err.kind, method .. ": " .. tostring(err))
    assert.equal(field, err.field, method)
    assert.matches(reason, err.reason, 1, false)
    assert.equal(field .. ": " .. err.reason, err.message)
    assert.equal(before, helpers.api_requests(sb), method .. ": the emulator received a request")
    return err
  end

  for family, rows in pairs(FAMILIES) do
    it(family, function()
      for _, row in ipairs(rows) do
        local method = row[1]
        refused(method, arg_of(row), row.field, row.reason)
        if method ~= "card_transactions" then -- the dry run sees the same first violation
          local ok, list = issuing.validate(method, arg_of(row))
          assert.is_nil(ok)
          assert.equal(row.field, list[1].field)
          assert.equal(family, list[1].rule, method .. " " .. row.field)
        end
      end
    end)
  end

  it("file: the document the library reads (path, size, emptiness), never echoing the path", function()
    local secret = dir .. "/passport of Zebulonia.png"
    local function doc(path)
      return { holder_id = 5, file_type = 1, file_name = "id.png", file_path = path }
    end
    local err = refused("upload_holder_document", doc(secret), "file_path", "cannot be opened")
    assert.is_nil(err.message:find("Zebulonia", 1, true))
    helpers.write_file(secret, ("\1"):rep(MiB2 + 1))
    err = refused("upload_holder_document", doc(secret), "file_path", "larger than 2097152 bytes")
    assert.is_nil(err.message:find("Zebulonia", 1, true))
    helpers.write_file(secret, "")
    refused("upload_holder_document", doc(secret), "file_path", "empty file")
    -- exactly 2 MiB is taken, and arrives whole
    local made = assert(client:create_holder(around.holder()))
    helpers.write_file(secret, ("\7"):rep(MiB2))
    local d = doc(secret)
    d.holder_id = made.holder_id
    local up, e = client:upload_holder_document(d)
    assert.is_nil(e)
    assert.is_true(up.ok)
    assert.equal(MiB2, assert(sb:holders())[made.holder_id].documents[1].size)
  end)
end)
