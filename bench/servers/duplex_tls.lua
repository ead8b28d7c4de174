-- duplex TLS echo peer of c_tls_server.c, written plainly with the public
-- API: one TLS context, srv:serve (the handshake runs in the connection's
-- task before the handler), then readsome + write until the end.
--   lua5.4 duplex_tls.lua CERT KEY PORT [noverify]    (prints "PORT n" when ready)
-- "noverify" spells out verify = false in the context (a server's default
-- anyway); tls.sh runs it as the server "duplex_noverify" (see README.md).
local duplex = require "duplex"

local cert, key, port, extra = arg[1], arg[2], tonumber(arg[3] or ""), arg[4]
if not (cert and key and port) or (extra and extra ~= "noverify") then
  io.stderr:write("usage: ", arg[0], " CERT KEY PORT [noverify]\n")
  os.exit(2)
end

local function echo(c)
  while true do
    local data = c:readsome() -- an idle connection's task waits here
    if not data then break end
    if not c:write(data) then break end
  end
  c:close()                   -- close_notify once, never awaited
end

duplex.run(function()
  local opts = { certificate = cert, key = key }
  if extra == "noverify" then opts.verify = false end
  local ctx = assert(duplex.tls.context(opts))
  local srv = assert(duplex.listen("127.0.0.1", port, { tls = ctx, backlog = 4096 }))
  local _, p = srv:getsockname()
  io.stdout:write("PORT ", p, "\n")
  io.stdout:flush()
  srv:serve(echo)
end)
