-- The core's JSON codec: exact integers ("long" ids), sorted keys, strict hostile-input decoding.
local core = require "pagsmile.issuing.core"

local encode, decode, null = core.json_encode, core.json_decode, core.null
local has_int = math.type ~= nil -- Lua 5.3+: integers exist

-- Deterministic on every runtime: Park-Miller (products stay below 2^53).
local function prng(seed)
  local x = seed
  return function(n)
    x = (x * 16807) % 2147483647
    return x % n
  end
end

local function deep_equal(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not deep_equal(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function assert_decode_error(s)
  local v, err = decode(s)
  assert.is_nil(v)
  assert.is_string(err)
  assert.matches("^invalid JSON at byte %d+: ", err)
  return err
end

describe("json encode #core", function()
  it("writes object keys in byte-wise sorted order", function()
    assert.equals('{"A":1,"B":true,"a":"x","aa":{},"b":{"y":2,"z":null}}',
      encode({ b = { z = null, y = 2 }, aa = {}, a = "x", B = true, A = 1 }))
    assert.equals('{"a":1,"a_":2,"b":3,"\195\169":4}', encode({ ["é"] = 4, b = 3, a_ = 2, a = 1 }))
  end)

  it("sorts larger objects too, identically every time", function()
    local t, keys = {}, {}
    for i = 1, 100 do
      local k = "k" .. ((i * 37) % 100)
      t[k] = i
      keys[#keys + 1] = k
    end
    table.sort(keys)
    local s = encode(t)
    local pos = 0
    for _, k in ipairs(keys) do
      local p = s:find('"' .. k .. '":', 1, true)
      assert.is_true(p > pos)
      pos = p
    end
    assert.equals(s, encode(t))
  end)

  it("writes arrays, the empty table, scalars and null", function()
    assert.equals('[1,"two",false,null,{}]', encode({ 1, "two", false, null, {} }))
    assert.equals("{}", encode({}))
    assert.equals("null", encode(nil))
    assert.equals("null", encode(null))
    assert.equals("true", encode(true))
    assert.equals('""', encode(""))
  end)

  it("writes integral numbers without a fraction", function()
    assert.equals("3", encode(3.0))
    assert.equals("-3", encode(-3))
    assert.equals("102012", encode(102012))
    assert.equals("9007199254740992", encode(2 ^ 53))
    assert.equals("[0,1,-1]", encode({ 0, 1, -1 }))
  end)

  it("writes floats in the shortest form that reads back exactly", function()
    assert.equals("0.1", encode(0.1))
    assert.equals("1.5e-07", encode(1.5e-7))
    assert.equals("0.5", encode(0.5))
    for _, x in ipairs({ 0.1, 1.5e-7, 1 / 3, 123.456, -2.5e300, 5e-324, 2 ^ 60 + 0.0, 1e21 }) do
      assert.equals(x, decode(encode(x)))
    end
  end)

  it("writes Lua integers exactly on 5.3+", function()
    if has_int then
      assert.equals("9223372036854775807", encode(math.maxinteger))
      assert.equals("-9223372036854775808", encode(math.mininteger))
      assert.equals("9007199254740993", encode(9007199254740993))
    else
      assert.equals("9007199254740992", encode(9007199254740992))
    end
  end)

  it("escapes quotes, backslashes, control bytes and DEL; keeps other UTF-8 raw", function()
    assert.equals('"\\"\\\\\\b\\f\\n\\r\\t\\u0000\\u001f\\u007f/"',
      encode('"\\\b\f\n\r\t\0\31\127/'))
    assert.equals('"caf\195\169 \240\159\152\128 \239\191\191"', encode("caf\195\169 \240\159\152\128 \239\191\191"))
  end)

  it("writes long userdata as bare digits", function()
    assert.equals("9007199254740993", encode(core.long("9007199254740993")))
    assert.equals('{"card_id":9223372036854775807,"holder_id":-9223372036854775808}', encode({
      card_id = core.long("9223372036854775807"),
      holder_id = core.long("-9223372036854775808"),
    }))
    assert.equals("[42]", encode({ core.long(42) }))
  end)

  it("rejects invalid UTF-8 with the path and without the contents", function()
    local bad = {
      "\255", "\192\175", "\224\128\175", "\237\160\128", "\237\191\191", "\244\144\128\128",
      "\248\136\128\128\128", "\195", "ab\226\130", "\128", "\240\159\152",
    }
    for _, s in ipairs(bad) do
      local v, err = encode("secretvalue" .. s)
      assert.is_nil(v)
      assert.matches("invalid UTF%-8", err)
      assert.is_nil(err:find("secretvalue", 1, true))
    end
    local v, err = encode({ holder = { first_name = "Jo\255secretvalue" } })
    assert.is_nil(v)
    assert.equals("holder.first_name: invalid UTF-8 in string", err)
    v, err = encode({ items = { "ok", "\255" } })
    assert.is_nil(v)
    assert.equals("items[2]: invalid UTF-8 in string", err)
    v, err = encode({ ["bad\255key"] = 1 })
    assert.is_nil(v)
    assert.matches("invalid UTF%-8", err)
    assert.is_nil(err:find("bad", 1, true))
  end)

  it("rejects NaN, infinities, functions, threads, foreign userdata", function()
    local cases = {
      { 0 / 0, "NaN" }, { 1 / 0, "infinite" }, { -1 / 0, "infinite" },
      { print, "function" }, { coroutine.create(function() end), "thread" },
      { io.stdout, "userdata" }, { { a = { print } }, "^a%[1%]: cannot encode a function" },
    }
    for _, c in ipairs(cases) do
      local v, err = encode(c[1])
      assert.is_nil(v)
      assert.matches(c[2], err)
    end
  end)

  it("rejects tables that are neither arrays 1..n nor string-keyed objects", function()
    local cases = {
      { 1, 2, x = 3 }, { [1] = "a", [3] = "c" }, { [0] = "z" }, { [1.5] = 1 }, { [true] = 1 },
      { [{}] = 1 }, { a = 1, [-1] = 2 },
    }
    for _, t in ipairs(cases) do
      local v, err = encode(t)
      assert.is_nil(v)
      assert.matches("object key must be a string, got %a+", err)
    end
    local _, err = encode({ [true] = 1 })
    assert.matches("got boolean", err)
    _, err = encode({ 1, 2, x = 3 })
    assert.matches("got number", err)
  end)

  it("limits nesting to 32 tables, which also stops cycles", function()
    local t = {}
    local inner = t
    for _ = 2, 32 do
      inner[1] = {}
      inner = inner[1]
    end
    assert.equals(string.rep("[", 31) .. "{}" .. string.rep("]", 31), encode(t))
    inner[1] = {}
    local v, err = encode(t)
    assert.is_nil(v)
    assert.matches("deeper than 32", err)
    local cyc = { name = "x" }
    cyc.self = cyc
    v, err = encode(cyc)
    assert.is_nil(v)
    assert.matches("deeper than 32", err)
  end)
end)

describe("json decode #core", function()
  it("round-trips nested tables", function()
    local doc = {
      order_no = "A-1", card_scheme = 3, is_share_card = false,
      card_limit = { daily_transactions = 10, single_amount = "100.50" },
      holder = { first_name = "Zoë", address = { line = "Rua \"1\"\n", country_code = "BR" } },
      list = { 1, "two", { three = 3 }, { 4, 5 }, null, true },
      ratio = 0.25,
    }
    local s = assert(encode(doc))
    local back = assert(decode(s))
    assert.is_true(deep_equal(doc, back))
    assert.equals(s, encode(back))
  end)

  it("decodes integral numbers as integers on 5.3+", function()
    local v = decode("102012")
    assert.equals(102012, v)
    if has_int then
      assert.equals("integer", math.type(v))
      assert.equals("integer", math.type(decode("-0")))
      assert.equals("float", math.type(decode("1.0")))
      assert.equals("float", math.type(decode("1e2")))
    else
      assert.equals("number", type(v))
    end
    assert.equals(100, decode("1e2"))
    assert.equals(-0.5, decode("-5E-1"))
  end)

  it("keeps 9007199254740993 exact", function()
    local v = decode("9007199254740993")
    if has_int then
      assert.equals("integer", math.type(v))
      assert.equals(9007199254740993, v)
      assert.equals("9007199254740993", tostring(v))
    else
      assert.equals("9007199254740993", v)
    end
    assert.equals("9007199254740993", encode(core.long("9007199254740993")))
    local t = decode('{"card_id":9007199254740993,"holder_id":123}')
    assert.equals("9007199254740993", tostring(t.card_id))
    assert.equals(123, t.holder_id)
  end)

  it("handles int64 max and min, and keeps bigger literals as strings", function()
    local max, min = decode("9223372036854775807"), decode("-9223372036854775808")
    if has_int then
      assert.equals(math.maxinteger, max)
      assert.equals(math.mininteger, min)
    else
      assert.equals("9223372036854775807", max)
      assert.equals("-9223372036854775808", min)
    end
    assert.equals("9223372036854775808", decode("9223372036854775808"))
    assert.equals("-9223372036854775809", decode("-9223372036854775809"))
    assert.equals("123456789012345678901234567890", decode("123456789012345678901234567890"))
    assert.equals("9223372036854775807", encode(core.long("9223372036854775807")))
    assert.equals("-9223372036854775808", encode(core.long("-9223372036854775808")))
  end)

  it("refuses numbers out of double range and flushes underflow", function()
    for _, s in ipairs({ "1e400", "-1e400", "[1.7976931348623159e308]" }) do
      assert.matches("number out of range", assert_decode_error(s))
    end
    assert.equals(0, decode("1e-400"))
    assert.equals(1.7976931348623157e308, decode("1.7976931348623157e308"))
  end)

  it("reads floats exactly, long literals too", function()
    assert.equals(0.1, decode("0.1"))
    assert.equals(1.5e-7, decode("1.5e-7"))
    assert.equals(1.5e-7, decode("1.5E-07"))
    assert.equals(0.1, decode("0." .. string.rep("0", 200) .. "1e200"))
    assert.equals(0.5, decode("0.5" .. string.rep("0", 300)))
  end)

  it("decodes escapes including surrogate pairs", function()
    assert.equals("\"\\/\b\f\n\r\t", decode([["\"\\\/\b\f\n\r\t"]]))
    assert.equals("caf\195\169", decode([["caf\u00e9"]]))
    assert.equals("caf\195\169", decode([["caf\u00E9"]]))
    assert.equals("\0", decode([["\u0000"]]))
    assert.equals("\226\130\172", decode([["\u20ac"]]))
    assert.equals("\240\159\152\128", decode([["\ud83d\ude00"]]))
    assert.equals("a\244\143\191\191b", decode([["a\uDBFF\uDFFFb"]]))
    assert.equals("raw \240\159\152\128 ok", decode('"raw \240\159\152\128 ok"'))
    local k = decode([[{"\u006bey":"v"}]])
    assert.equals("v", k.key)
  end)

  it("keeps null in arrays as core.null and drops null members of objects", function()
    local a = decode("[1,null,3,null]")
    assert.equals(4, #a)
    assert.equals(null, a[2])
    assert.equals(null, a[4])
    assert.equals(3, a[3])
    local o = decode('{"a":null,"b":1,"c":[null]}')
    assert.is_nil(o.a)
    assert.equals(1, o.b)
    assert.equals(null, o.c[1])
    local n = 0
    for _ in pairs(o) do n = n + 1 end
    assert.equals(2, n)
    assert.equals(null, decode(" null "))
  end)

  it("refuses a duplicate key, a null one too (issue 9 item 3: the last order_no must not win)",
     function()
    for _, text in ipairs {
      '{"a":1,"a":2}', '{"a":1,"a":null}', '{"a":null,"a":1}', '{"a":null,"a":null}',
      '{"data":{"order_no":"A","x":1,"order_no":"B"}}', '[{"k":true,"k":false}]',
      '{"\\u0061":1,"a":2}',
    } do
      local v, err = decode(text)
      assert.is_nil(v, text)
      assert.matches("duplicate key", err, 1, true)
    end
    -- the same key in sibling objects is no duplicate; nulls are still left out
    local o = decode('{"a":{"k":1},"b":{"k":2},"c":null,"d":[{"k":null}]}')
    assert.equals(1, o.a.k)
    assert.equals(2, o.b.k)
    assert.is_nil(o.c)
    assert.is_nil(next(o.d[1]))
  end)

  it("allows surrounding whitespace", function()
    assert.is_true(deep_equal({ 1, { a = true } }, decode(' \t\r\n[ 1 , { "a" : true } ]\n ')))
    assert.is_true(deep_equal({}, decode("[]")))
    assert.is_true(deep_equal({}, decode("{ }")))
  end)

  it("accepts 64 levels of nesting and refuses 65", function()
    local ok = decode(string.rep("[", 64) .. string.rep("]", 64))
    assert.is_table(ok)
    local err = assert_decode_error(string.rep("[", 65) .. string.rep("]", 65))
    assert.matches("deeper than 64", err)
    err = assert_decode_error(string.rep('{"a":', 65) .. "1" .. string.rep("}", 65))
    assert.matches("deeper than 64", err)
    assert_decode_error(string.rep("[", 100000))
  end)

  it("rejects every class of invalid input with a byte position", function()
    local bad = {
      "", " ", "nul", "tru", "nulll", "True", "NaN", "Infinity", "-Infinity", "undefined",
      "[1,2", "{", '{"a"', '{"a":', '{"a":1', '"abc', '"abc\\', "[", "[1,]", '{"a":1,}',
      "[,1]", "[1 2]", '{"a" 1}', "{a:1}", "{'a':1}", "['a']", '{"a":1}x', "1 2", "[] []",
      "// c\n1", "/* c */ 1", "1 // c", "#1",
      "01", "-01", "00", "-", "--1", "+1", ".5", "1.", "1.e5", "1e", "1e+", "0x10", "1_000",
      "-.5", "- 1",
      '"\\x"', '"\\u12"', '"\\u12g4"', '"\\U0041"', '"\\\'"', '"\\a"', '"\\0"',
      '"\\ud800"', '"\\udc00"', '"\\ud800\\u0041"', '"\\ud800\\ud800"', '"\\ud800x"',
      '"\\ude00\\ud83d"',
      '"\255"', '"\192\175"', '"\224\128\175"', '"\237\160\128"', '"\244\144\128\128"',
      '"\195"', '"\128"', '"\240\159\152"', '"a\226\130', '{"\255":1}',
      '"a\0b"', '"a\nb"', '"\t"', '"\31"',
      "\239\187\191{}", "\0", "[1]\0",
    }
    for _, s in ipairs(bad) do
      local v, err = decode(s)
      assert.is_nil(v, ("accepted %q"):format(s))
      assert.matches("^invalid JSON at byte %d+: ", err)
    end
  end)

  it("reports where and what, never the input", function()
    assert.equals("invalid JSON at byte 1: unexpected end of input", select(2, decode("")))
    assert.equals("invalid JSON at byte 1: leading zero in number", select(2, decode("01")))
    assert.equals("invalid JSON at byte 4: unexpected data after the value", select(2, decode("[1]x")))
    assert.equals("invalid JSON at byte 4: expected a value", select(2, decode("[1,]")))
    assert.equals("invalid JSON at byte 6: invalid UTF-8 in string", select(2, decode('["abc\255"]')))
    local _, err = decode('{"secretvalue":"topsecret\1"}')
    assert.is_nil(err:find("secret", 1, true))
  end)

  it("leaves nothing behind on failure (stack or globals)", function()
    for _ = 1, 200 do
      assert.is_nil(decode('[1,{"a":[2,"x\\u00e9",' .. string.rep("[", 70)))
      assert.is_nil(encode({ a = { 1, 2, { b = print } } }))
    end
    assert.equals('[1,{"a":[2,"x\195\169"]}]', encode(decode('[1,{"a":[2,"x\\u00e9"]}]')))
  end)

  it("refuses a non-string argument", function()
    assert.has_error(function() decode(nil) end)
    assert.has_error(function() decode({}) end)
  end)
end)

describe("json long #core", function()
  it("makes longs from integers, safe floats, decimal strings and longs", function()
    local l = core.long("9007199254740993")
    assert.is_true(core.is_long(l))
    assert.equals("9007199254740993", tostring(l))
    assert.equals(l, core.long(l))
    assert.equals("42", tostring(core.long(42)))
    assert.equals("42", tostring(core.long(42.0)))
    assert.equals("-9007199254740992", tostring(core.long(-2 ^ 53)))
    assert.equals("0", tostring(core.long("0")))
    assert.equals("0", tostring(core.long("-0")))
    assert.equals("-9223372036854775808", tostring(core.long("-9223372036854775808")))
    assert.is_true(core.long("5") == core.long(5))
    assert.is_false(core.long("5") == core.long(6))
    assert.is_false(core.is_long(5))
    assert.is_false(core.is_long("5"))
    assert.is_false(core.is_long(io.stdout))
    if has_int then
      assert.equals(math.maxinteger, core.long_value(core.long(math.maxinteger)))
      assert.equals("integer", math.type(core.long_value(core.long("7"))))
    else
      assert.equals("9007199254740993", core.long_value(l))
      assert.equals(7, core.long_value(core.long("7")))
    end
  end)

  it("refuses anything that is not an exact 64-bit integer", function()
    local bad = {
      "", "-", "+1", " 1", "1 ", "01", "-01", "1.0", "1e3", "0x10", "abc",
      "9223372036854775808", "-9223372036854775809", "99999999999999999999999",
      1.5, 2 ^ 53 + 2, 0 / 0, 1 / 0, {}, true, print,
    }
    for _, x in ipairs(bad) do
      local v, err = core.long(x)
      assert.is_nil(v)
      assert.matches("^long: ", err)
    end
    assert.matches("64%-bit range", select(2, core.long("9223372036854775808")))
    assert.has_error(function() core.long_value(5) end)
  end)
end)

describe("json fuzz #core", function()
  local seeds = {
    '{"code":"10000","msg":"ok","data":{"card_id":9007199254740993,"card_pan":"658704******0112",' ..
      '"order_status":5,"is_share_card":false,"list":[1,-2.5e-3,null,"\\u00e9\\ud83d\\ude00"]}}',
    '[0,-0,1e5,1E+5,0.5e-5,"a\\"b\\\\c\\/\\n",true,false,null,{},[],{"":""}]',
    '{"a":{"b":{"c":[[[{"d":"caf\195\169"}]]]}}}',
  }

  it("never crashes on mutated or random input, and what it accepts re-encodes stably", function()
    local rand = prng(20240601)
    local accepted, rejected = 0, 0
    for i = 1, 4000 do
      local s
      if i % 5 == 0 then
        local bytes = {}
        for j = 1, rand(40) do bytes[j] = string.char(rand(256)) end
        s = table.concat(bytes)
      else
        s = seeds[rand(#seeds) + 1]
        for _ = 1, rand(4) + 1 do
          local pos, op = rand(#s + 1) + 1, rand(4)
          local c = string.char(rand(256))
          if op == 0 then
            s = s:sub(1, pos - 1) .. c .. s:sub(pos + 1)
          elseif op == 1 then
            s = s:sub(1, pos - 1) .. c .. s:sub(pos)
          elseif op == 2 then
            s = s:sub(1, pos - 1) .. s:sub(pos + 1)
          else
            s = s:sub(1, pos)
          end
        end
      end
      local v, err = decode(s)
      if err ~= nil then
        rejected = rejected + 1
        assert.is_nil(v)
        assert.matches("^invalid JSON at byte %d+: ", err)
      else
        accepted = accepted + 1
        local once = assert(encode(v))
        assert.equals(once, encode(assert(decode(once))))
      end
    end
    assert.is_true(accepted > 0)
    assert.is_true(rejected > 0)
  end)

  it("encodes random byte strings iff they are valid UTF-8, and reads them back", function()
    local rand = prng(7)
    local ok_count = 0
    for _ = 1, 3000 do
      local bytes = {}
      for j = 1, rand(12) do
        -- Mostly high bytes so that valid and invalid sequences both occur.
        bytes[j] = string.char(rand(3) == 0 and rand(128) or 128 + rand(128))
      end
      local s = table.concat(bytes)
      local out, err = encode(s)
      if out then
        ok_count = ok_count + 1
        assert.equals(s, decode(out))
        if utf8 and utf8.len then assert.is_truthy(utf8.len(s)) end
      else
        assert.matches("invalid UTF%-8", err)
      end
    end
    assert.is_true(ok_count > 0)
  end)
end)
