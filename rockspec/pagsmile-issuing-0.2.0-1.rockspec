rockspec_format = "3.0"
package = "pagsmile-issuing"
version = "0.2.0-1"
source = {
  url = "git+https://example.invalid/pagsmile-issuing.git",
}
description = {
  summary = "Issue payment cards through the Pagsmile Issuing Card API",
  detailed = [[
A Lua client for the Pagsmile Issuing Card API with a C core (OpenSSL for the hybrid
RSA/AES envelope, libcurl for HTTP, exact 64-bit ids in JSON) and a non-blocking
cosocket transport for OpenResty.]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1, < 5.5",
}
external_dependencies = {
  -- by library only: Debian and Ubuntu keep curl.h under the multiarch include dir, where
  -- the compiler finds it but luarocks does not look
  CURL = { library = "curl" },
  OPENSSL = { header = "openssl/evp.h", library = "crypto" },
}
build = {
  type = "builtin",
  modules = {
    ["pagsmile.issuing"] = "lua/pagsmile/issuing.lua",
    ["pagsmile.issuing.api"] = "lua/pagsmile/issuing/api.lua",
    ["pagsmile.issuing.batch"] = "lua/pagsmile/issuing/batch.lua",
    ["pagsmile.issuing.client"] = "lua/pagsmile/issuing/client.lua",
    ["pagsmile.issuing.endpoints"] = "lua/pagsmile/issuing/endpoints.lua",
    ["pagsmile.issuing.envelope"] = "lua/pagsmile/issuing/envelope.lua",
    ["pagsmile.issuing.errors"] = "lua/pagsmile/issuing/errors.lua",
    ["pagsmile.issuing.http"] = "lua/pagsmile/issuing/http.lua",
    ["pagsmile.issuing.json"] = "lua/pagsmile/issuing/json.lua",
    ["pagsmile.issuing.options"] = "lua/pagsmile/issuing/options.lua",
    ["pagsmile.issuing.runtime"] = "lua/pagsmile/issuing/runtime.lua",
    ["pagsmile.issuing.schema"] = "lua/pagsmile/issuing/schema.lua",
    -- the local emulator (`pagsmile-issuing emulator`), a tool beside the library: its own
    -- module tree, never loaded by require "pagsmile.issuing". It runs in nginx's LuaJIT, so it
    -- needs this rock built for Lua 5.1 too; nginx, libnginx-mod-http-lua, lua-socket and
    -- lua-argparse come from the system (not declared: luarocks would download them)
    ["pagsmile_emulator.handler"] = "lua/pagsmile_emulator/handler.lua",
    ["pagsmile_emulator.launch"] = "lua/pagsmile_emulator/launch.lua",
    ["pagsmile_emulator.nginx"] = "lua/pagsmile_emulator/nginx.lua",
    ["pagsmile_emulator.tls"] = "lua/pagsmile_emulator/tls.lua",
    -- the command line (`pagsmile-issuing`, docs/CLI.md). Its `apply --file` needs lpeg
    -- (Debian lua-lpeg), luasql.sqlite3 (lua-sql-sqlite3) and, for Ctrl-C on 5.1/LuaJIT,
    -- posix (lua-posix); the command also needs argparse (lua-argparse). Like the emulator's,
    -- they come from the system, not declared: a missing one is a one-line error naming it
    ["pagsmile.issuing.cli.bulk"] = "lua/pagsmile/issuing/cli/bulk.lua",
    ["pagsmile.issuing.cli.cards"] = "lua/pagsmile/issuing/cli/cards.lua",
    ["pagsmile.issuing.cli.convert"] = "lua/pagsmile/issuing/cli/convert.lua",
    ["pagsmile.issuing.cli.csv"] = "lua/pagsmile/issuing/cli/csv.lua",
    ["pagsmile.issuing.cli.deps"] = "lua/pagsmile/issuing/cli/deps.lua",
    ["pagsmile.issuing.cli.digest"] = "lua/pagsmile/issuing/cli/digest.lua",
    ["pagsmile.issuing.cli.emulator"] = "lua/pagsmile/issuing/cli/emulator.lua",
    ["pagsmile.issuing.cli.journal"] = "lua/pagsmile/issuing/cli/journal.lua",
    ["pagsmile.issuing.cli.keygen"] = "lua/pagsmile/issuing/cli/keygen.lua",
    ["pagsmile.issuing.cli.main"] = "lua/pagsmile/issuing/cli/main.lua",
    ["pagsmile.issuing.cli.output"] = "lua/pagsmile/issuing/cli/output.lua",
    ["pagsmile.issuing.cli.progress"] = "lua/pagsmile/issuing/cli/progress.lua",
    ["pagsmile.issuing.cli.rows"] = "lua/pagsmile/issuing/cli/rows.lua",
    ["pagsmile.issuing.cli.settings"] = "lua/pagsmile/issuing/cli/settings.lua",
    ["pagsmile.issuing.cli.signals"] = "lua/pagsmile/issuing/cli/signals.lua",
    ["pagsmile.issuing.transport.curl"] = "lua/pagsmile/issuing/transport/curl.lua",
    ["pagsmile.issuing.transport.ngx"] = "lua/pagsmile/issuing/transport/ngx.lua",
    ["pagsmile.issuing.core"] = {
      sources = {
        "src/core.c", "src/buf.c", "src/json.c", "src/crypto.c", "src/http.c", "src/clock.c",
      },
      defines = { "_POSIX_C_SOURCE=200809L" },
      incdirs = { "$(CURL_INCDIR)", "$(OPENSSL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(OPENSSL_LIBDIR)" },
      libraries = { "curl", "ssl", "crypto" },
    },
  },
  install = {
    bin = { ["pagsmile-issuing"] = "bin/pagsmile-issuing" },
  },
}
