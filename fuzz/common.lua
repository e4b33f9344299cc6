-- Shared by the fuzz targets (fuzz/*.lua, run inside the harness) and fuzz/make-corpus.lua.
local M = {}

-- The AES key and IV of the harness's fixed session: answers sealed with them (and no
-- random_key) open without an RSA operation, so mutations reach the AES and JSON layers
-- at full speed. Not a secret: a test constant like the known-answer vectors of the specs.
M.SESSION_KEY = "FuzzSessionKey16"
M.SESSION_IV = "0123456789ABCDEF"

-- The merchant private key the corpus's answers were sealed for (written by
-- make-corpus.lua, git-ignored); without it the harness makes a key of its own.
M.KEY_FILE = os.getenv("PAGSMILE_FUZZ_KEY") or "build/fuzz/merchant_private.pem"

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

return M
