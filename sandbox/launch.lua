-- Kept for the specs, examples and tools that require "sandbox.launch": the code moved to
-- lua/pagsmile/issuing/emulator/launch.lua, which the rock installs.
return require "pagsmile.issuing.emulator.launch"
