-- Kept for the specs, examples and tools that require "sandbox.tls": the code moved to
-- lua/pagsmile_emulator/tls.lua, which the rock installs.
return require "pagsmile_emulator.tls"
