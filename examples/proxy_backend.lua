-- proxy_backend.lua: a backend behind HAProxy or nginx that speaks the
-- PROXY protocol (v1 or v2): each connection starts with the proxy's
-- header, and the server answers every line with the client's true address
-- (getpeername) and what the header said. HAProxy's health checks
-- (check-send-proxy with send-proxy-v2) arrive as LOCAL headers and are
-- counted, not answered. The README's PROXY protocol section has a
-- haproxy.cfg for two of these.
-- Run: lua5.4 examples/proxy_backend.lua [host] [port] [proxy_from...]
--      (default 127.0.0.1 0, trusting loopback proxies only), then e.g.
--      printf 'PROXY TCP4 203.0.113.7 127.0.0.1 4242 80\r\nhi\n' | nc 127.0.0.1 PORT

-- find duplex in this checkout unless LUA_PATH / LUA_CPATH say otherwise
dofile(((arg and arg[0] or ""):match("^(.*)[/\\]") or ".") .. "/repo_path.lua")

local duplex = require "duplex"

local host = arg[1] or "127.0.0.1"
local port = tonumber(arg[2] or 0) or error("bad port: " .. arg[2])
from = #arg > 2 and { (table.unpack or unpack)(arg, 3) } or nil   -- nil: loopback only

local server = assert(duplex.listen(host, port, { proxy = true, proxy_from = from }))
local lhost, lport = server:getsockname()
io.write("listening ", lhost, " ", lport, "\n")
io.stdout:flush()  -- whoever started us waits for this line

local checks = 0
duplex.onsignal("TERM", function() server:close(2) end)
server:serve(function(c)
  local info = c:proxyinfo()
  if info.command == "LOCAL" then               -- a health check: nothing to answer
    checks = checks + 1
    return
  end
  local chost, cport = c:getpeername()          -- the client, not the proxy
  local tlvs = info.tlvs or {}
  while true do                                 -- (not lines(): Lua 5.1 cannot wait in a for-in)
    local line = c:read("l")
    if not line then break end
    c:write(("you are %s port %s (PROXY v%d%s%s; %d health checks so far): %s\n"):format(
      chost, tostring(cport), info.version,
      tlvs.authority and ", for " .. tlvs.authority or "",
      tlvs.ssl and tlvs.ssl.version and ", TLS " .. tlvs.ssl.version or "",
      checks, line))
  end
end)
