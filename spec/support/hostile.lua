-- The hostile inputs, in one table for every user (issue 11): spec 03 and spec 06 assert what
-- each must give, and fuzz/make-corpus.lua seeds the fuzzer with the same bytes.
local hostile = {}

--- Answer bodies envelope.open must refuse without raising: { name, body, kind, pattern }.
-- `s` carries real sealed material: s.answer(random_key, data) makes a success envelope,
-- s.rk / s.data a pair sealed for the merchant, s.wrong_rk / s.wrong_data one sealed for
-- another key.
function hostile.answers(s)
  local rk, data, answer = s.rk, s.data, s.answer
  return {
    { "empty body", "", "protocol", "empty" },
    { "HTML error page", "<html>\r\n<head><title>502 Bad Gateway</title></head></html>", "protocol", "not JSON" },
    { "NUL after the object", '{"code":"10000"}\0garbage', "protocol", "not JSON" },
    { "truncated JSON", answer(rk, data):sub(1, 100), "protocol", "not JSON" },
    { "nested 70 deep", ("["):rep(70) .. ("]"):rep(70), "protocol", "nesting deeper than 64" },
    { "a JSON string", '"10000"', "protocol", "not a JSON object" },
    { "a JSON array", "[1,2]", "protocol", "no code" },
    { "no code", '{"msg":"x"}', "protocol", "no code" },
    { "code is an object", '{"code":{"a":1}}', "protocol", "no code" },
    { "an api refusal with a numeric code", '{"code":40002,"sub_code":"order-not-found"}', "api", "refused" },
    { "data is a number", '{"code":"10000","data":12}', "protocol", "neither a string nor an object" },
    { "random_key is a number", answer(nil, data):gsub('"code"', '"random_key":12,"code"'),
      "protocol", "without random_key" },
    { "random_key is not Base64", answer("%%%%", data), "protocol", "random_key is not valid Base64" },
    { "bad Base64 in random_key", answer("!!!!" .. rk:sub(5), data), "protocol", "not valid Base64" },
    { "random_key truncated", answer(rk:sub(1, 100), data), "protocol", "wrong length" },
    { "random_key altered", answer((rk:sub(1, 1) == "B" and "C" or "B") .. rk:sub(2), data),
      "protocol", "do not decrypt" },
    { "random_key for another merchant", answer(s.wrong_rk, data), "protocol", "do not decrypt" },
    { "random_key far too long", answer(("A"):rep(4000), data), "protocol", "too long" },
    { "data cut inside the IV", answer(rk, data:sub(1, 10)), "protocol", "16%-character hex IV" },
    { "data is only the IV", answer(rk, data:sub(1, 16)), "protocol", "not valid Base64" },
    { "bad Base64 after the IV", answer(rk, data:sub(1, 16) .. "@@@@"), "protocol", "not valid Base64" },
    { "data cut off mid-block", answer(rk, data:sub(1, #data - 4)), "protocol", "whole number of AES blocks" },
    { "misaligned ciphertext", answer(rk, data:sub(1, 16) .. "QUJDRA=="), "protocol",
      "whole number of AES blocks" },
    { "IV is not hex", answer(rk, ("Z"):rep(16) .. data:sub(17)), "protocol", "hex IV" },
    { "bad padding (another key's ciphertext)", answer(rk, s.wrong_data), "protocol", "do not decrypt" },
  }
end

--- JSON texts the decoder must refuse, with its position: { name, text, pattern }.
hostile.JSON_REFUSED = {
  { "nested 65 deep", ("["):rep(65) .. ("]"):rep(65), "nesting deeper than 64" },
  { "objects nested 70 deep", ('{"a":'):rep(70) .. "1" .. ("}"):rep(70), "nesting deeper than 64" },
  { "a lone high surrogate", '"\\ud800"', "high surrogate" },
  { "a lone low surrogate", '"\\udc00\\ud800"', "lone low surrogate" },
  { "overlong UTF-8", '"\192\175"', "invalid UTF%-8" },
  { "a UTF-8 surrogate", '"\237\160\128"', "invalid UTF%-8" },
  { "a raw NUL in a string", '"a\0b"', "control character" },
  { "1e400", "[1e400]", "out of range" },
  { "a trailing comma", '{"a":1,}', "expected a string key" },
  { "a leading zero", "01", "leading zero" },
  { "an open array", "[", "unexpected end of input" },
}

--- Envelopes and JSON written by hand for the fuzzer: shapes the decoder must refuse or
-- survive (name -> bytes).
hostile.SEEDS = {
  ["code-number"] = '{"code":10000,"data":""}',
  ["code-table"] = '{"code":{"a":1}}',
  ["data-number"] = '{"code":"10000","data":12}',
  ["data-array"] = '{"code":"10000","data":[1,2,null]}',
  ["rk-not-b64"] = '{"code":"10000","random_key":"%%%%","data":"0123456789ABCDEFAAAA"}',
  ["rk-too-long"] = '{"code":"10000","random_key":"' .. ("A"):rep(2000) .. '","data":"0123456789ABCDEF"}',
  -- just under the Base64 length of the largest RSA modulus the core takes (1024 bytes)
  ["rk-near-limit"] = '{"code":"10000","random_key":"' .. ("A"):rep(1364) .. '","data":"0123456789ABCDEFAAAA"}',
  ["iv-short"] = '{"code":"10000","random_key":"QUFB","data":"0123"}',
  ["iv-not-hex"] = '{"code":"10000","data":"ZZZZZZZZZZZZZZZZAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}',
  ["ct-partial-block"] = '{"code":"10000","data":"0123456789ABCDEFAAAAAAAA"}',
  ["api-error"] = '{"code":"40002","msg":"Business Failed","sub_code":"order-not-found","sub_msg":"x"}',
  ["deep"] = ("["):rep(70) .. ("]"):rep(70),
  ["deep-object"] = ('{"a":'):rep(70) .. "1" .. ("}"):rep(70),
  ["longs"] = '[9223372036854775807,-9223372036854775808,9223372036854775808,18446744073709551616,' ..
              '9007199254740993,-0,1e400,-1e400,1.5e-400,0.1,123456789012345678901234567890]',
  ["escapes"] = '["\\u0000\\ud83d\\ude00\\ud800\\udc00\\u00e9\\/\\b\\f\\n\\r\\t\\"\\\\","\\ud800"]',
  ["utf8"] = '["\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80","\xc0\xaf","\xed\xa0\x80","\xf4\x90\x80\x80"]',
  ["dup-keys"] = '{"a":1,"a":2,"b":null,"c":[null]}',
  ["ws"] = ' \t\r\n{ "a" : [ 1 , 2 ] } \n',
}
for _, c in ipairs(hostile.JSON_REFUSED) do
  hostile.SEEDS["refused-" .. c[1]:gsub("%W+", "-")] = c[2]
end

return hostile
