-- cqueues peer: one coroutine per connection on a cqueues controller.
local cqueues = require "cqueues"
local socket = require "cqueues.socket"
local common = dofile(arg[0]:gsub("[^/]*$", "") .. "common.lua")
local mode, port = common.args()
local RESP, RESP_CLOSE, wants_close = common.RESP, common.RESP_CLOSE, common.wants_close

local cq = cqueues.new()
local srv = assert(socket.listen("127.0.0.1", port))
assert(srv:listen())
local _, _, p = srv:localname()
common.announce(p)

local function http(con)
  con:setmode("t", "bf")
  while true do
    local head = {}
    local line = con:read("*L")
    if not line then break end
    head[1] = line
    repeat
      line = con:read("*L")
      if not line then return end
      head[#head + 1] = line
    until line == "\r\n" or line == "\n"
    if wants_close(table.concat(head)) then
      con:write(RESP_CLOSE); con:flush()
      break
    end
    con:write(RESP)
    if not con:flush() then break end
  end
end

local function echo(con)
  con:setmode("b", "bn")
  while true do
    local data = con:read(-65536)
    if not data then break end
    if not con:write(data) then break end
  end
end

local handler = mode == "http" and http or echo
cq:wrap(function()
  for con in srv:clients() do
    cq:wrap(function()
      pcall(handler, con) -- a reset by the peer raises; it only ends this connection
      con:close()
    end)
  end
end)
assert(cq:loop())
