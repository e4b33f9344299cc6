std = "max"
max_line_length = 120
files["spec"] = { std = "+busted" }
-- Code that runs inside OpenResty reads the ngx global.
read_globals = { "ngx" }
