-- duplex peer, written plainly with the public API: one task per connection
-- (srv:serve), code that reads as if it blocked.
local duplex = require "duplex"
local common = dofile(arg[0]:gsub("[^/]*$", "") .. "common.lua")
local mode, port = common.args()
local RESP, RESP_CLOSE, wants_close = common.RESP, common.RESP_CLOSE, common.wants_close

local function http(c)
  while true do
    local head = c:readuntil("\r\n\r\n")
    if not head then break end -- EOF or error
    if wants_close(head) then
      c:write(RESP_CLOSE)
      break
    end
    if not c:write(RESP) then break end
  end
  c:close()
end

local function echo(c)
  while true do
    local data = c:readsome() -- an idle connection's task waits here
    if not data then break end
    if not c:write(data) then break end
  end
  c:close()
end

duplex.run(function()
  local srv = assert(duplex.listen("127.0.0.1", port, { backlog = 4096 }))
  local _, p = srv:getsockname()
  common.announce(p)
  srv:serve(mode == "http" and http or echo)
end)
