-- duplex's HTTP peer (as duplex.lua) on a listener with the PROXY protocol
-- on when PROXY=1 in the environment (proxy.sh puts HAProxy with
-- send-proxy-v2 in front), off otherwise; it reads getpeername for every
-- connection either way, as a server that logs its clients would.
local duplex = require "duplex"
local common = dofile(arg[0]:gsub("[^/]*$", "") .. "common.lua")
local _, port = common.args()
local RESP, RESP_CLOSE, wants_close = common.RESP, common.RESP_CLOSE, common.wants_close
local proxy = os.getenv("PROXY") == "1"
local seen = 0

local function http(c)
  if c:getpeername() then seen = seen + 1 end
  while true do
    local head = c:readuntil("\r\n\r\n")
    if not head then break end
    if wants_close(head) then
      c:write(RESP_CLOSE)
      break
    end
    if not c:write(RESP) then break end
  end
  c:close()
end

duplex.run(function()
  local srv = assert(duplex.listen("127.0.0.1", port, { backlog = 4096, proxy = proxy or nil }))
  local _, p = srv:getsockname()
  common.announce(p)
  srv:serve(http)
end)
