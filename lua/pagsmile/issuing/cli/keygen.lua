-- `pagsmile-issuing keygen [--out DIR]`: a new merchant key pair in DIR (merchant_private.pem,
-- mode 0600, and merchant_public.pem), never over an existing file; the public key's bare
-- Base64 (what the dashboard takes) on stdout, alone, so that a script can capture it.
local issuing = require "pagsmile.issuing"
local deps = require "pagsmile.issuing.cli.deps"

local keygen = {}

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

-- Makes `path` empty with mode `mode`, failing if it exists: the shell's noclobber opens it
-- with O_EXCL, and the umask gives the mode at creation (no moment where a key is readable).
local function create_new(path, umask)
  return sh("(umask " .. umask .. " && set -C && : > " .. q(path) .. ") 2>/dev/null")
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

function keygen.run(args)
  local dir = args.out or "."
  if not sh("test -d " .. q(dir) .. " && test -w " .. q(dir)) then
    deps.fail(deps.USAGE, dir .. " is not a writable directory")
  end
  local private_file, public_file = dir .. "/merchant_private.pem", dir .. "/merchant_public.pem"
  for _, path in ipairs { private_file, public_file } do
    local f = io.open(path, "rb")
    if f then
      f:close()
      deps.fail(deps.USAGE, path .. " exists: keygen never replaces a key (move it away first)")
    end
  end
  if not create_new(private_file, "077") then
    deps.fail(deps.USAGE, "cannot create " .. private_file .. " (it appeared meanwhile, or the directory refused)")
  end
  local private_pem, public_pem, public_b64 = issuing.keygen()
  write(private_file, private_pem)
  if not create_new(public_file, "022") then
    deps.fail(deps.USAGE, "cannot create " .. public_file)
  end
  write(public_file, public_pem)
  io.stdout:write(public_b64, "\n")
  io.stdout:flush()
  io.stderr:write("pagsmile-issuing: wrote ", private_file, " (mode 0600: keep it secret; it is ",
    "PAGSMILE_MERCHANT_PRIVATE_KEY_FILE) and ", public_file, "; paste the Base64 line above into ",
    "the dashboard\n")
  return 0
end

return keygen
