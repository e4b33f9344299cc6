-- Kept for the specs, examples and tools that require "sandbox.tls": the code moved to
-- lua/pagsmile/issuing/emulator/tls.lua, which the rock installs.
return require "pagsmile.issuing.emulator.tls"
