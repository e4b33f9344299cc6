-- Kept for the specs, examples and tools that require "sandbox.nginx": the code moved to
-- lua/pagsmile/issuing/emulator/nginx.lua, which the rock installs.
return require "pagsmile.issuing.emulator.nginx"
