-- Kept for the specs, examples and tools that require "sandbox.nginx": the code moved to
-- lua/pagsmile_emulator/nginx.lua, which the rock installs.
return require "pagsmile_emulator.nginx"
