-- The command line's input (docs/CLI.md, "Input files"), in process: CSV as spreadsheets write
-- it (RFC 4180 through LPeg), cells converted by the schema's types, JSONL with exact long ids,
-- and the order_nos derived from rows. The command itself runs as a process in spec/81 and 82.
local csv = require "pagsmile.issuing.cli.csv"
local deps = require "pagsmile.issuing.cli.deps"
local digest = require "pagsmile.issuing.cli.digest"
local rows = require "pagsmile.issuing.cli.rows"
local helpers = require "helpers"

local function records(text)
  local out = {}
  for line, fields in csv.records(text) do out[#out + 1] = { line = line, fields = fields } end
  return out
end

local function broken(text)
  local ok, err = pcall(records, text)
  assert.is_false(ok)
  return err.csv_error
end

-- The rows of `text` written to a file of this extension, prepared with `prefix`.
local function read(text, ext, prefix)
  local dir = helpers.tmpdir()
  local path = dir .. "/rows." .. ext
  helpers.write_file(path, text)
  local ok, list = pcall(rows.read, path, rows.format(path))
  os.execute("rm -rf '" .. dir .. "'")
  if not ok then return nil, list end
  return rows.prepare(list, prefix)
end

local HEADER = "order_no,card_type,holder.first_name,holder.last_name,holder.mobile,holder.email,"
  .. "holder.id_type,holder.id_no,holder.birthday,holder.nationality_code,holder.address.line,"
  .. "holder.address.postal_code,holder.address.city_name,holder.address.state,"
  .. "holder.address.country_code"
local CELLS = "1,Ana,Souza,+5511987654321,ana@example.com,1,39053344705,1990-04-12,BR,"
  .. '"Avenida Paulista, 1578",01310200,Sao Paulo,Sao Paulo,BR'

describe("CSV (RFC 4180, LPeg)", function()
  it("keeps quoted commas, doubled quotes and line breaks byte for byte; CRLF, LF and a BOM", function()
    local got = records('\239\187\191a,b,c\r\n1,"x, y","he said ""hi"""\r\n\r\n2,"multi\r\nline",'
      .. '\n"",3,"é"')
    assert.same({
      { line = 1, fields = { "a", "b", "c" } },
      { line = 2, fields = { "1", "x, y", 'he said "hi"' } },
      { line = 4, fields = { "2", "multi\r\nline", "" } },
      { line = 6, fields = { "", "3", "é" } },
    }, got)
  end)

  it("a broken file says where: an unclosed quote, a quote inside a field, text after one", function()
    assert.equal('line 3: a quoted field is never closed (a missing ")', broken('a,b\n1,2\n3,"open\n4,5\n'))
    assert.matches("^line 2: a quote inside an unquoted field", broken('a,b\n1,ab"c\n'))
    assert.matches("^line 4: text after the closing quote", broken('a,b\n1,"x\n\ny" z\n'))
  end)

  it("csv.line quotes what must be quoted, and reads back the same", function()
    local fields = { "plain", "a,b", 'q"uote', "two\r\nlines", "", " spaced " }
    local text = csv.line(fields, #fields)
    assert.equal('plain,"a,b","q""uote","two\r\nlines",, spaced \n', text)
    assert.same(fields, records(text)[1].fields)
  end)
end)

describe("rows from CSV: the header's dotted paths and the schema's types", function()
  it("converts integers and booleans, keeps amounts, text and long ids as written; empty is absent", function()
    local list = assert(read(HEADER .. ",is_share_card,initial_balance,card_limit.daily_transactions,"
      .. "card_limit.single_amount,card_limit.daily_amount,card_limit.monthly_amount,card_remark,# notes\n"
      .. "A-1," .. CELLS .. ',TRUE,50.00,20,500.00,1000.00,5000.00,"  spaced, ""quoted""  ",'
      .. '"a note\nover lines"\n' .. "A-2," .. CELLS .. ",no,,,,,,,\n", "csv"))
    local a, b = list[1], list[2]
    assert.is_true(a.valid, a.problems[1] and a.problems[1].message)
    assert.equal(1, a.biz.card_type)
    assert.equal(1, a.biz.holder.id_type)
    assert.is_true(a.biz.is_share_card)
    assert.equal("50.00", a.biz.initial_balance)
    assert.same({ daily_transactions = 20, single_amount = "500.00", daily_amount = "1000.00",
                  monthly_amount = "5000.00" }, a.biz.card_limit)
    assert.equal('  spaced, "quoted"  ', a.biz.card_remark)
    assert.equal("Avenida Paulista, 1578", a.biz.holder.address.line)
    assert.is_nil(a.biz["# notes"])
    assert.equal(4, b.line) -- the note's line break moved it
    assert.is_false(b.biz.is_share_card)
    assert.is_nil(b.biz.card_limit)
    assert.is_nil(b.biz.initial_balance)
  end)

  it("a cell that does not convert is that row's violation, with its field and rule", function()
    local list = assert(read(HEADER .. "\nA-1," .. CELLS:gsub("^1,", "one,") .. "\n", "csv"))
    assert.is_false(list[1].valid)
    assert.equal("card_type", list[1].problems[1].field)
    assert.equal("type", list[1].problems[1].rule)
  end)

  it("a header that names no field stops the run, with the validator's suggestion", function()
    local _, err = read("order_no,holder.adress.line\nA,x\n", "csv")
    assert.is_true(deps.is_failure(err))
    assert.matches('column 2: holder.adress: .*did you mean "address"', err.message)
    _, err = read("order_no,holder\nA,x\n", "csv")
    assert.matches("column 2: holder is an object", err.message)
  end)

  it("a row with too few or too many fields is a violation naming the counts", function()
    local list = assert(read("order_no,card_type\nA,1,extra\n", "csv"))
    assert.equal("columns", list[1].problems[1].rule)
    assert.matches("has 3 fields, the header 2", list[1].problems[1].message)
  end)
end)

describe("rows from JSONL", function()
  it("decodes one object per line with exact long ids; a bad line is that line's violation", function()
    local list = assert(read('{"order_no":"J-1","card_type":1,"holder_id":9007199254740993}\n\n'
      .. "not json\n[1]\n", "jsonl"))
    assert.equal(3, #list)
    assert.is_true(list[1].valid, list[1].problems[1] and list[1].problems[1].message)
    assert.equal("9007199254740993", list[1].biz.holder_id)
    assert.same({ 3, "json" }, { list[2].line, list[2].problems[1].rule })
    assert.same({ 4, "is not a JSON object" }, { list[3].line, list[3].problems[1].message })
  end)
end)

describe("order_nos derived from rows", function()
  it("the hash is the same on every runtime (pinned)", function()
    assert.equal("E78ZMSJQQ6X42C17", digest.hash(""))
    assert.equal("MBNAM408H9DKEVT5", digest.hash(("x"):rep(1000)))
  end)

  it("a row gets PREFIX-<hash>; the same row in CSV and JSONL gets the same one", function()
    local from_csv = assert(read(HEADER .. "\n," .. CELLS .. "\n", "csv", "B7"))[1]
    local from_jsonl = assert(read('{"card_type":1,"holder":{"first_name":"Ana","last_name":"Souza",'
      .. '"mobile":"+5511987654321","email":"ana@example.com","id_type":1,"id_no":"39053344705",'
      .. '"birthday":"1990-04-12","nationality_code":"BR","address":{"line":"Avenida Paulista, 1578",'
      .. '"postal_code":"01310200","city_name":"Sao Paulo","state":"Sao Paulo","country_code":"BR"}}}\n',
      "jsonl", "B7"))[1]
    assert.matches("^B7%-[0-9A-HJKMNP-TV-Z]+$", from_csv.order_no)
    assert.equal(18 + 1, #from_csv.order_no)
    assert.is_true(from_csv.derived)
    assert.equal(from_csv.order_no, from_jsonl.order_no)
  end)

  it("identical rows get distinct order_nos; a repeated given order_no is a violation", function()
    local list = assert(read(HEADER .. "\n," .. CELLS .. "\n," .. CELLS .. "\nX-1," .. CELLS
      .. "\nX-1," .. CELLS .. "\n", "csv", "B7"))
    assert.is_true(list[1].valid and list[2].valid)
    assert.are_not.equal(list[1].order_no, list[2].order_no)
    assert.is_true(list[3].valid)
    assert.same({ "order_no", "duplicate" }, { list[4].problems[1].field, list[4].problems[1].rule })
  end)

  it("without --order-prefix a row without order_no says how to get one", function()
    local list = assert(read(HEADER .. "\n," .. CELLS .. "\n", "csv"))
    assert.matches("give %-%-order%-prefix", list[1].problems[1].message)
    assert.is_nil(rows.check_prefix("a.b"))
    assert.is_nil(rows.check_prefix(("P"):rep(16)))
    assert.is_true(rows.check_prefix(("P"):rep(15)))
  end)
end)
