-- The way Lua users install (issue 10 item 2): plain `luarocks make`, with no variables,
-- into a temporary tree, on this runtime's Lua version, from a copy of what the rockspec
-- names; then a fresh interpreter that knows only that tree requires the module and uses it.
-- Runs on PUC Lua (5.1, 5.3, 5.4): luarocks builds for an interpreter, not for LuaJIT.
local helpers = require "helpers"

local version = _VERSION:match("^Lua (%d%.%d)$")
if rawget(_G, "jit") or not version then return end

describe("the rock #rock", function()
  it("installs with plain `luarocks make` on Lua " .. version .. " and loads", function()
    local dir = helpers.tmpdir()
    local _, copied = helpers.sh(("cp -r rockspec lua src bin %q/"):format(dir))
    assert.is_true(copied)
    local log, built = helpers.sh(("cd %q && luarocks --lua-version=%s --tree=%q/tree make "
      .. "> build.log 2>&1 && cat build.log || { cat build.log; false; }"):format(dir, version, dir))
    assert.is_true(built, log)
    assert.matches("pagsmile-issuing 0.2.0-1 is now installed", log, 1, true)
    local out, ran = helpers.sh(("cd / && eval \"$(luarocks --lua-version=%s --tree=%q/tree "
      .. "path)\" && lua%s -e 'local i = require \"pagsmile.issuing\" "
      .. "local _, _, pub = i.keygen() print(i._VERSION, #pub > 300)'"):format(version, dir, version))
    assert.is_true(ran, out)
    assert.equal("pagsmile-issuing 0.2.0\ttrue\n", out) -- from / : only the tree has it
  end)
end)
