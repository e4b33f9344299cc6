-- Kept for the specs, examples and tools that require "sandbox.launch": the code moved to
-- lua/pagsmile_emulator/launch.lua, which the rock installs.
return require "pagsmile_emulator.launch"
