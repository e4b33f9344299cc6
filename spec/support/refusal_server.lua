-- luacheck: globals ngx
-- Inside nginx: a platform that refuses every request with server-chosen text no error line
-- may print as it is (spec 36): a code with a newline and a terminal escape, then 3000 "c";
-- a sub_code of 100000 "S\r\n".
local json = require "pagsmile.issuing.json"

local refusal_server = {}

function refusal_server.refuse()
  ngx.print(json.encode {
    code = "E\n\27[2J" .. string.rep("c", 3000),
    sub_code = string.rep("S\r\n", 100000),
    msg = "refused", sub_msg = "no",
  })
end

return refusal_server
